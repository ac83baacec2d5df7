-- A small retailer for sqlcoder-eval's tests, shaped like defog-data's newer databases:
-- mixed-case names created unquoted (they fold to lower case) and quoted (they keep
-- their case), tables in two schemas other than public, and declared keys.

CREATE SCHEMA sales;
CREATE SCHEMA hr;

CREATE TABLE Customer (
  CustId integer PRIMARY KEY,
  CustName varchar(50) NOT NULL,
  City varchar(30)
);

CREATE TABLE hr."StaffMember" (
  "StaffId" integer PRIMARY KEY,
  "FullName" text NOT NULL,
  dept text
);

CREATE TABLE sales.OrderHeader (
  OrderId integer PRIMARY KEY,
  CustomerRef integer NOT NULL REFERENCES Customer (CustId),
  SalesRep integer REFERENCES hr."StaffMember" ("StaffId"),
  OrderDate date NOT NULL,
  Status char(1) NOT NULL, -- N new, S shipped, C cancelled
  TotalAmount numeric(10, 2)
);

CREATE TABLE sales."OrderLine" (
  "OrderId" integer NOT NULL REFERENCES sales.OrderHeader (OrderId),
  "LineNo" integer NOT NULL,
  Sku varchar(12) NOT NULL,
  Qty integer NOT NULL,
  PRIMARY KEY ("OrderId", "LineNo")
);

INSERT INTO Customer VALUES
(1, 'Ada', 'Paris'), (2, 'Brian', 'London'), (3, 'Chloe', 'Paris'), (4, 'Dev', NULL);

INSERT INTO hr."StaffMember" VALUES
(10, 'Grace Hopper', 'north'), (11, 'Alan Turing', 'south'), (12, 'Edsger Dijkstra', 'north');

INSERT INTO sales.OrderHeader VALUES
(100, 1, 10, '2024-01-15', 'S', 120.00),
(101, 1, 11, '2024-02-03', 'S', 35.50),
(102, 2, 10, '2024-02-20', 'N', 80.25),
(103, 3, 12, '2024-02-28', 'C', 15.00),
(104, 3, 11, '2024-03-10', 'S', 240.00),
(105, 4, NULL, '2024-03-30', 'N', 9.99);

INSERT INTO sales."OrderLine" VALUES
(100, 1, 'BK-001', 2), (100, 2, 'MG-004', 1), (101, 1, 'BK-002', 1), (102, 1, 'LP-003', 1),
(103, 1, 'MG-004', 3), (104, 1, 'HP-005', 2), (104, 2, 'CB-006', 4), (105, 1, 'CB-006', 1);

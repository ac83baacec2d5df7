-- demo/sample.sql: a small shop database for `make demo` and the tests.
-- Dates are relative to the day it is loaded, so "last month" always has rows.

CREATE TABLE customers (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL UNIQUE,
    country     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE customers IS 'people and companies who buy from the shop';
COMMENT ON COLUMN customers.country IS 'ISO 3166-1 alpha-2 country code, e.g. DE';

CREATE TABLE products (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    category    text NOT NULL,
    price       numeric(10,2) NOT NULL
);
COMMENT ON COLUMN products.price IS 'current list price in EUR';

CREATE TABLE orders (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    ordered_at  timestamptz NOT NULL,
    status      text NOT NULL
);
COMMENT ON COLUMN orders.status IS 'one of: placed, shipped, cancelled';

CREATE TABLE order_items (
    order_id    integer NOT NULL REFERENCES orders (id),
    product_id  integer NOT NULL REFERENCES products (id),
    quantity    integer NOT NULL,
    unit_price  numeric(10,2) NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
COMMENT ON COLUMN order_items.unit_price IS 'price in EUR paid per unit';

INSERT INTO customers (name, email, country) VALUES
  ('Ada Lovelace', 'ada@example.com', 'GB'),
  ('Grace Hopper', 'grace@example.com', 'US'),
  ('Konrad Zuse', 'konrad@example.com', 'DE'),
  ('Edsger Dijkstra', 'edsger@example.com', 'NL'),
  ('Barbara Liskov', 'barbara@example.com', 'US'),
  ('Niklaus Wirth', 'niklaus@example.com', 'CH');

INSERT INTO products (name, category, price) VALUES
  ('Mechanical keyboard', 'hardware', 129.00),
  ('USB-C cable', 'hardware', 9.90),
  ('Monitor 27"', 'hardware', 289.00),
  ('SQL handbook', 'books', 39.50),
  ('Algorithms, 4th ed.', 'books', 59.00),
  ('Coffee beans 1kg', 'groceries', 18.40);

INSERT INTO orders (customer_id, ordered_at, status)
SELECT 1 + (g % 6), now() - (g * interval '3 days'), (ARRAY['placed','shipped','shipped','cancelled'])[1 + g % 4]
FROM generate_series(1, 40) AS g;

INSERT INTO order_items (order_id, product_id, quantity, unit_price)
SELECT o.id, p.id, 1 + (o.id + p.id) % 3, p.price
FROM orders o JOIN products p ON (o.id + p.id) % 4 = 0;

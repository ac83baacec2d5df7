-- A tiny shop for sqlcoder-eval's tests, in the defog-data dump style (CREATE TABLE + INSERT).

CREATE TABLE public.customers (
    customer_id bigint NOT NULL,
    name text,
    city text,
    signup_date date
);

CREATE TABLE public.products (
    product_id bigint NOT NULL,
    name text,
    category text,
    price numeric(10,2)
);

CREATE TABLE public.orders (
    order_id bigint NOT NULL,
    customer_id bigint,
    order_date date,
    status text
);

CREATE TABLE public.order_items (
    order_id bigint NOT NULL,
    product_id bigint NOT NULL,
    quantity integer
);

INSERT INTO public.customers (customer_id, name, city, signup_date) VALUES
(1, 'Ada', 'Paris', '2023-01-15'),
(2, 'Brian', 'London', '2023-03-02'),
(3, 'Chloe', 'paris', '2023-06-20'),
(4, 'Dev', 'Berlin', '2024-01-05'),
(5, 'Eve', NULL, '2024-02-11'),
(6, 'Ada', 'Madrid', '2024-02-29')
;

INSERT INTO public.products (product_id, name, category, price) VALUES
(1, 'Novel', 'Books', 12.50),
(2, 'Atlas', 'Books', 30.00),
(3, 'Lamp', 'Home', 45.99),
(4, 'Mug', 'Home', 8.25),
(5, 'Headphones', 'Electronics', 99.00),
(6, 'Cable', 'Electronics', 5.75)
;

INSERT INTO public.orders (order_id, customer_id, order_date, status) VALUES
(101, 1, '2024-01-10', 'delivered'),
(102, 1, '2024-03-05', 'delivered'),
(103, 2, '2024-03-18', 'shipped'),
(104, 3, '2024-03-30', 'delivered'),
(105, 4, '2024-04-02', 'cancelled'),
(106, 5, '2024-04-15', 'delivered'),
(107, 2, '2024-05-01', 'pending'),
(108, 6, '2023-12-24', 'delivered'),
(109, 1, '2024-05-20', 'shipped'),
(110, 3, '2024-06-01', 'delivered')
;

INSERT INTO public.order_items (order_id, product_id, quantity) VALUES
(101, 1, 2),
(101, 4, 1),
(102, 5, 1),
(103, 2, 1),
(103, 6, 3),
(104, 3, 1),
(105, 5, 2),
(106, 1, 1),
(106, 2, 1),
(107, 4, 4),
(108, 3, 2),
(109, 6, 1),
(110, 1, 3),
(110, 5, 1)
;

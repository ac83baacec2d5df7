-- A tiny library for sqlcoder-eval's tests, in the defog-data dump style (CREATE TABLE + INSERT).

CREATE TABLE public.authors (
    author_id bigint NOT NULL,
    name text,
    country text
);

CREATE TABLE public.books (
    book_id bigint NOT NULL,
    title text,
    author_id bigint,
    year integer,
    pages integer
);

CREATE TABLE public.loans (
    loan_id bigint NOT NULL,
    book_id bigint,
    member text,
    loan_date date,
    return_date date
);

INSERT INTO public.authors (author_id, name, country) VALUES
(1, 'George Orwell', 'UK'),
(2, 'Jane Austen', 'UK'),
(3, 'Toni Morrison', 'USA'),
(4, 'Haruki Murakami', 'Japan')
;

INSERT INTO public.books (book_id, title, author_id, year, pages) VALUES
(1, '1984', 1, 1949, 328),
(2, 'Animal Farm', 1, 1945, 112),
(3, 'Emma', 2, 1815, 474),
(4, 'Persuasion', 2, 1817, 249),
(5, 'Beloved', 3, 1987, 324),
(6, 'Kafka on the Shore', 4, 2002, 505),
(7, 'Norwegian Wood', 4, 1987, 296)
;

INSERT INTO public.loans (loan_id, book_id, member, loan_date, return_date) VALUES
(1, 1, 'Alice', '2024-01-02', '2024-01-10'),
(2, 3, 'Alice', '2024-01-15', '2024-02-20'),
(3, 5, 'Bob', '2024-02-01', NULL),
(4, 6, 'Carol', '2024-02-03', '2024-02-12'),
(5, 1, 'Bob', '2024-03-01', '2024-03-30'),
(6, 7, 'Alice', '2024-03-05', NULL),
(7, 2, 'Dan', '2024-03-10', '2024-03-12')
;

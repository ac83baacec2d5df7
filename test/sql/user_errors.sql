-- What a user sees when sqlcoder refuses: SQLSTATE class, message, DETAIL and
-- HINT as psql shows them, each SQLSTATE echoed after it (no daemon needed). Generated SQL runs only for an
-- ordinary role, so the calls run as one.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE ROLE regress_sqlcoder_user LOGIN;
-- grant_access says what it granted, in one line
SELECT sqlcoder.grant_access('regress_sqlcoder_user') ~ '^granted regress_sqlcoder_user: USAGE on schemas sqlcoder and sqlcoder_internal, EXECUTE on [0-9]+ functions, privileges on [0-9]+ tables \(sqlcoder\.' AS granted;
CREATE TABLE public.regress_items (id int PRIMARY KEY, name text, price numeric);
INSERT INTO public.regress_items VALUES (1, 'pen', 1.50), (2, 'ink', 12345678901234567890.25);
GRANT SELECT ON public.regress_items TO regress_sqlcoder_user;
SET ROLE regress_sqlcoder_user;
-- anything but a plain query: the message says what the text is
SELECT * FROM sqlcoder.execute('DELETE FROM regress_items');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM sqlcoder.execute('WITH gone AS (DELETE FROM regress_items RETURNING id) SELECT count(*) FROM gone');
SELECT * FROM sqlcoder.execute('SELECT * INTO stolen FROM regress_items');
-- a function the policy refuses, with the way out in the HINT
SELECT * FROM sqlcoder.execute('SELECT pg_catalog.pg_sleep(0)');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- typed columns from the json rows (README: "Typed columns")
SELECT r.* FROM sqlcoder.execute('SELECT id, name, price FROM regress_items ORDER BY id') AS j,
  json_to_record(j) AS r(id int, name text, price numeric);
-- typed columns kept by execute_typed: the bigint and the numeric keep every digit
SELECT * FROM sqlcoder.execute_typed('SELECT id::bigint * 1000000000000 AS big, name, price FROM regress_items ORDER BY id')
  AS r(big bigint, name text, price numeric);
-- another listed type is read through its text form; a wrong column count says what the query returns
SELECT * FROM sqlcoder.execute_typed('SELECT id, price FROM regress_items ORDER BY id') AS r(id text, price numeric(30,1));
SELECT * FROM sqlcoder.execute_typed('SELECT id, name FROM regress_items') AS r(id int);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM sqlcoder.execute_typed('SELECT name FROM regress_items') AS r(name int);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM sqlcoder.execute_typed('DELETE FROM regress_items') AS r(id int);
-- feedback: an id that is not one of yours is an error class, not 02000
SELECT sqlcoder.feedback(-1, true);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT sqlcoder.feedback(NULL, true);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- feedback writes to sqlcoder.history: a read-only transaction gets a HINT
BEGIN READ ONLY;
SELECT sqlcoder.feedback(-1, true);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
ROLLBACK;
-- and so does promoting a history row to an example
BEGIN READ ONLY;
SELECT sqlcoder.promote_example(-1);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT sqlcoder.promote_example(-1);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
-- an instructions argument over max_instructions_chars
UPDATE sqlcoder.config SET value = '10' WHERE key = 'max_instructions_chars';
SELECT sqlcoder.prompt('how many items?', 'prices are in euros, always');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
DELETE FROM sqlcoder.config WHERE key = 'max_instructions_chars';
SELECT value FROM sqlcoder.config WHERE key = 'max_instructions_chars';
SELECT sqlcoder.revoke_access('regress_sqlcoder_user') ~ '^revoked from regress_sqlcoder_user: USAGE on schemas sqlcoder and sqlcoder_internal, EXECUTE on [0-9]+ functions' AS revoked;
DROP TABLE public.regress_items;
DROP ROLE regress_sqlcoder_user;

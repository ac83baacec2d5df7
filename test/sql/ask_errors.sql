-- Bad input and an absent daemon give clear errors, never a traceback.
\set VERBOSITY default
UPDATE sqlcoder.config SET value = '/nonexistent/sqlcoder.sock' WHERE key = 'socket_path';
SELECT sqlcoder.ask(NULL);
SELECT sqlcoder.ask('');
SELECT sqlcoder.ask('   ');
-- no table on the path: an error before the daemon is asked
SELECT sqlcoder.ask('how many tables are there?');
SELECT sqlcoder.prompt('how many tables are there?');
CREATE TABLE public.regress_things (id int PRIMARY KEY, name text);
SELECT sqlcoder.ask('how many tables are there?');
SELECT sqlcoder.status() ->> 'reachable' AS reachable;
UPDATE sqlcoder.config SET value = 'relative/path.sock' WHERE key = 'socket_path';
SELECT sqlcoder.ask('how many tables are there?');
UPDATE sqlcoder.config SET value = '/run/sqlcoder/sqlcoder.sock' WHERE key = 'socket_path';
DROP TABLE public.regress_things;
-- status() as rows a person can read, nested keys joined with dots
SELECT key, value FROM sqlcoder.status_report() WHERE key IN ('reachable', 'socket_path') ORDER BY key;

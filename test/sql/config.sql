-- Settings: a view over defaults and a DBA's overrides; only superusers change them.
UPDATE sqlcoder.config SET value = '/srv/sqlcoder/sqlcoder.sock' WHERE key = 'socket_path';
SELECT key, value, default_value FROM sqlcoder.config WHERE key = 'socket_path';
SELECT key, value FROM sqlcoder.config_override ORDER BY key;
-- back to its default: the override goes away
UPDATE sqlcoder.config SET value = default_value WHERE key = 'socket_path';
SELECT count(*) AS overrides FROM sqlcoder.config_override;
-- DELETE resets to the default too
UPDATE sqlcoder.config SET value = '7' WHERE key = 'max_rows';
DELETE FROM sqlcoder.config WHERE key = 'max_rows';
SELECT value FROM sqlcoder.config WHERE key = 'max_rows';
-- only the value can change, and never to NULL
UPDATE sqlcoder.config SET key = 'other' WHERE key = 'max_rows';
UPDATE sqlcoder.config SET value = NULL WHERE key = 'max_rows';
-- a granted role reads the settings but cannot change them
CREATE ROLE regress_sqlcoder_analyst;
-- grant_access says what it granted, in one line
SELECT sqlcoder.grant_access('regress_sqlcoder_analyst') ~ '^granted regress_sqlcoder_analyst: USAGE on schemas sqlcoder and sqlcoder_internal, EXECUTE on [0-9]+ functions, privileges on [0-9]+ tables \(sqlcoder\.' AS granted;
SET ROLE regress_sqlcoder_analyst;
SELECT count(*) > 0 AS can_read FROM sqlcoder.config;
UPDATE sqlcoder.config SET value = '/tmp/evil.sock' WHERE key = 'socket_path';
DELETE FROM sqlcoder.config WHERE key = 'socket_path';
INSERT INTO sqlcoder.config_override VALUES ('socket_path', '/tmp/evil.sock');
RESET ROLE;
-- revoke_access takes it all back
SELECT sqlcoder.revoke_access('regress_sqlcoder_analyst') ~ '^revoked from regress_sqlcoder_analyst: USAGE on schemas sqlcoder and sqlcoder_internal, EXECUTE on [0-9]+ functions' AS revoked;
SET ROLE regress_sqlcoder_analyst;
SELECT count(*) FROM sqlcoder.config;
RESET ROLE;
DROP ROLE regress_sqlcoder_analyst;

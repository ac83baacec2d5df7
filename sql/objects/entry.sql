------------------------------------------------------------------------------
-- Internals. One PL/Python entry point puts exactly the package directory
-- fixed at `make install` on sys.path and calls one function of the package,
-- passing plpy in (the logic is unit-testable without a server). It hands its
-- result back as text in a composite, (value, error); _result, in C, returns
-- the value or raises the error, so users see PostgreSQL's own error fields
-- (SQLSTATE, DETAIL, HINT), never a Python traceback, and no internal CONTEXT.

CREATE TYPE sqlcoder_internal._reply AS (value text, error jsonb);
COMMENT ON TYPE sqlcoder_internal._reply IS 'internal: what sqlcoder_internal._invoke returns';

-- _invoke is C (src/invoke.c): it calls _invoke_python, granted to nobody,
-- with a token only that call knows, which the history functions check.
-- lock_timeout here bounds the wait for the settings themselves; the package
-- then sets lock_timeout_ms for the rest of the call (undone on return).
CREATE FUNCTION sqlcoder_internal._invoke_python(op text, params jsonb, token text)
RETURNS sqlcoder_internal._reply
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
import sys
if "@PYTHON_DIR@" not in sys.path:
    sys.path.insert(0, "@PYTHON_DIR@")
from sqlcoder import api
return api.entry(plpy, "0.4.0", op, params, token)
$$;
COMMENT ON FUNCTION sqlcoder_internal._invoke_python(text, jsonb, text) IS
  'internal: the in-database Python package, called by sqlcoder_internal._invoke only (granted to nobody)';

CREATE FUNCTION sqlcoder_internal._invoke(op text, params jsonb)
RETURNS sqlcoder_internal._reply
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS '$libdir/sqlcoder_pg', 'sqlcoder_invoke';
COMMENT ON FUNCTION sqlcoder_internal._invoke(text, jsonb) IS
  'internal: dispatch to the in-database Python package, with a token its internal functions check';

CREATE FUNCTION sqlcoder_internal._result(reply sqlcoder_internal._reply)
RETURNS text
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS '$libdir/sqlcoder_pg', 'sqlcoder_result';
COMMENT ON FUNCTION sqlcoder_internal._result(sqlcoder_internal._reply) IS 'internal: the value of a reply, or raise its error';

REVOKE ALL ON FUNCTION sqlcoder_internal._invoke(text, jsonb), sqlcoder_internal._invoke_python(text, jsonb, text),
  sqlcoder_internal._result(sqlcoder_internal._reply) FROM PUBLIC;

INSERT INTO sqlcoder_internal._access_list (kind, object, privileges) VALUES
  ('function', 'sqlcoder_internal._invoke(text, jsonb)', 'EXECUTE'),
  ('function', 'sqlcoder_internal._result(sqlcoder_internal._reply)', 'EXECUTE');

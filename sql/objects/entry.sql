------------------------------------------------------------------------------
-- Internals. One PL/Python entry point puts exactly the package directory
-- fixed at `make install` on sys.path and calls one function of the package,
-- passing plpy in (the logic is unit-testable without a server). It hands its
-- result back as text in a composite, (value, error); _result, in C, returns
-- the value or raises the error, so users see PostgreSQL's own error fields
-- (SQLSTATE, DETAIL, HINT), never a Python traceback, and no internal CONTEXT.

CREATE TYPE sqlcoder._reply AS (value text, error jsonb);
COMMENT ON TYPE sqlcoder._reply IS 'internal: what sqlcoder._invoke returns';

CREATE FUNCTION sqlcoder._invoke(op text, params jsonb)
RETURNS sqlcoder._reply
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
import sys
if "@PYTHON_DIR@" not in sys.path:
    sys.path.insert(0, "@PYTHON_DIR@")
from sqlcoder import api
return api.entry(plpy, "0.4.0", op, params)
$$;
COMMENT ON FUNCTION sqlcoder._invoke(text, jsonb) IS 'internal: dispatch to the in-database Python package';

CREATE FUNCTION sqlcoder._result(reply sqlcoder._reply)
RETURNS text
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS '$libdir/sqlcoder_pg', 'sqlcoder_result';
COMMENT ON FUNCTION sqlcoder._result(sqlcoder._reply) IS 'internal: the value of a reply, or raise its error';

REVOKE ALL ON FUNCTION sqlcoder._invoke(text, jsonb), sqlcoder._result(sqlcoder._reply) FROM PUBLIC;

INSERT INTO sqlcoder._access_list (kind, object, privileges) VALUES
  ('function', 'sqlcoder._invoke(text, jsonb)', 'EXECUTE'),
  ('function', 'sqlcoder._result(sqlcoder._reply)', 'EXECUTE');

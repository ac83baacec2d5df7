#!/usr/bin/env bash
# docker/initdb/10-sqlcoder.sh: create the sqlcoder extension in the image's
# default database and point it at the daemon's socket.
#
# The official postgres image runs this once, from /docker-entrypoint-initdb.d,
# against a temporary server, when it initialises an empty data directory.
# docker/check-postgres-steps.sh runs it against a throwaway cluster.
#
# Environment:
#   POSTGRES_USER, POSTGRES_DB  set by the image's entrypoint (defaults: postgres)
#   SQLCODER_SOCKET_PATH        the daemon's socket (default /run/sqlcoder/sqlcoder.sock)
#   SQLCODER_GRANT_TO           optional roles, separated by spaces or commas, that
#                               may use sqlcoder.ask/prompt/status (they must exist:
#                               create them in an earlier init script)
set -Eeuo pipefail

db="${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"
socket="${SQLCODER_SOCKET_PATH:-/run/sqlcoder/sqlcoder.sock}"
grantees="${SQLCODER_GRANT_TO:-}"

# Values travel as psql variables and are quoted by psql (:'name'), never
# pasted into SQL text by the shell.
psql -X -q -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "$db" \
     -v socket="$socket" <<'EOSQL'
CREATE EXTENSION IF NOT EXISTS sqlcoder CASCADE;
UPDATE sqlcoder.config SET value = :'socket' WHERE key = 'socket_path';
EOSQL

for role in ${grantees//,/ }; do
  psql -X -q -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "$db" \
       -v role="$role" <<'EOSQL'
SELECT sqlcoder.grant_access(:'role'::regrole) \g /dev/null
EOSQL
  echo "sqlcoder: granted use to $role"
done

echo "sqlcoder: extension created in database \"$db\", daemon socket $socket"

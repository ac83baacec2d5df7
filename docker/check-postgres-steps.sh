#!/usr/bin/env bash
# docker/check-postgres-steps.sh: perform docker/postgres.Dockerfile's steps on
# this machine's PostgreSQL, where no Docker engine runs, and check the result.
#
#   1. the image's package step: PL/Python for this major must be installed;
#   2. the build stage: `make install DESTDIR=<staging>` in a directory holding
#      only the files the build stage COPYs;
#   3. the final stage's `COPY --from=build /staging/ /` (a real install; needs root);
#   4. the image's first start: a fresh cluster (sqlcoder_dev.pgcluster.Cluster)
#      runs docker/initdb/10-sqlcoder.sh the way the image's entrypoint does,
#      and the extension, its socket setting and a grant are checked.
#
# Run from anywhere: docker/check-postgres-steps.sh  (tests/repo/test_packaging_images.py does)
# Environment: PG_CONFIG (default pg_config), PYTHON (default .venv/bin/python).
set -Eeuo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pg_config="${PG_CONFIG:-pg_config}"
python="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || python=python3
major="$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')"
stage="$(mktemp -d -t sqlcoder-stage.XXXXXX)"
trap 'rm -rf "$stage"' EXIT

step() { printf '== %s\n' "$*"; }

step "1. PL/Python for PostgreSQL $major (the image installs postgresql-plpython3-\$PG_MAJOR)"
if [ ! -f "$("$pg_config" --pkglibdir)/plpython3.so" ]; then
  echo "plpython3.so is missing: apt-get install postgresql-plpython3-$major" >&2
  exit 1
fi

step "2. make install DESTDIR=$stage, in a copy of only what the build stage COPYs"
# The build context is what the Dockerfile names, not the checkout: a file the
# Makefile needs but the Dockerfile forgot fails here as it would in `docker build`.
src="$(mktemp -d -t sqlcoder-src.XXXXXX)"
trap 'rm -rf "$stage" "$src"' EXIT
awk '/^FROM .* AS build/ {b = 1; next} /^FROM / {b = 0}
     b && /^COPY / && !/--from/ {for (i = 2; i < NF; i++) print $i}' "$repo/docker/postgres.Dockerfile" |
while read -r path; do
  echo "COPY $path"
  ( cd "$repo" && cp -r --parents "$path" "$src/" )
done
make -C "$src" --no-print-directory -s install DESTDIR="$stage" PG_CONFIG="$pg_config"
( cd "$stage" && find . -type f | sed 's|^\.||' | sort )
sharedir="$("$pg_config" --sharedir)"
test -f "$stage$sharedir/extension/sqlcoder.control" || { echo "no control file staged" >&2; exit 1; }

step "3. copy the staged files into / (the final stage's COPY --from=build)"
# File by file: copying the staging directory itself would give its mode
# (mktemp's 0700) to / and the directories above the files.
( cd "$stage" && find . -type f -print0 | while IFS= read -r -d '' f; do
    install -D -m 0644 "$f" "/${f#./}"
  done )

step "4. first start: a fresh cluster runs docker/initdb/10-sqlcoder.sh"
PYTHONPATH="$repo/python${PYTHONPATH:+:$PYTHONPATH}" "$python" - "$repo" <<'PY'
import os
import subprocess
import sys

from sqlcoder_dev.pgcluster import Cluster

repo = sys.argv[1]
socket_path = "/run/sqlcoder-check/sqlcoder.sock"
with Cluster() as pg:
    pg.createdb("app")
    pg.psql("CREATE ROLE app_reader LOGIN")
    env = dict(os.environ, POSTGRES_USER="postgres", POSTGRES_DB="app", PGHOST=str(pg.sockdir),
               PGPORT=str(pg.port), SQLCODER_SOCKET_PATH=socket_path, SQLCODER_GRANT_TO="app_reader")
    r = subprocess.run(["bash", f"{repo}/docker/initdb/10-sqlcoder.sh"], env=env, capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    if r.returncode != 0:
        sys.exit(f"init script failed ({r.returncode}):\n{r.stderr}")
    checks = {
        "extension version": (
            "SELECT extversion FROM pg_extension WHERE extname = 'sqlcoder'",
            subprocess.run(["sed", "-n", r"s/^default_version *= *'\(.*\)'/\1/p", f"{repo}/sqlcoder.control"],
                           capture_output=True, text=True, check=True).stdout.strip()),
        "plpython3u pulled in by CASCADE": ("SELECT count(*) FROM pg_extension WHERE extname = 'plpython3u'", "1"),
        "socket_path": ("SELECT value FROM sqlcoder.config WHERE key = 'socket_path'", socket_path),
        "grant to app_reader": (
            "SELECT has_function_privilege('app_reader', 'sqlcoder.ask(text, text, bigint)', 'EXECUTE')", "t"),
        "no grant to PUBLIC": (
            "SELECT has_function_privilege('public', 'sqlcoder.ask(text, text, bigint)', 'EXECUTE')", "f"),
    }
    failed = 0
    for name, (sql, want) in checks.items():
        got = pg.psql(sql, dbname="app").strip()
        ok = got == want
        failed += not ok
        print(f"{'ok' if ok else 'FAILED'}: {name}: {got!r}" + ("" if ok else f" (want {want!r})"))
    sys.exit(1 if failed else 0)
PY

step "postgres image steps: OK"

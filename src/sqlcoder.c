/*
 * src/sqlcoder.c: the extension's shared library, sqlcoder_pg.so.
 *
 * PL/Python does the work; C is here only where PostgreSQL's internals alone
 * can answer (each concern in its own file under src/).
 */
#include "postgres.h"
#include "fmgr.h"

#include "sqlcoder.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	sqlcoder_define_decoding_option();
}

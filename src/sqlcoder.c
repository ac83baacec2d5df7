/*
 * src/sqlcoder.c: the extension's shared library, sqlcoder_pg.so.
 *
 * PL/Python does the work; C is here only where PostgreSQL's internals alone
 * can answer (each concern in its own file under src/). Loading the library
 * installs the function policy's hooks (src/policy_hook.c), which act only
 * while a guarded call is armed, and defines the superuser-only option
 * sqlcoder.constrained_decoding (src/decoding_option.c).
 */
#include "postgres.h"
#include "fmgr.h"

#include "decoding_option.h"
#include "policy_hook.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	policy_hook_install();
	decoding_option_define();
}

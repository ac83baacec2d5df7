/*
 * src/decoding_option.c: sqlcoder.constrained_decoding, the per-call override of the constrained_decoding
 * setting. PGC_SUSET: only a superuser (or a role granted SET on it) can set it, in a session, a
 * transaction (SET LOCAL), a function's SET clause, or ALTER ROLE/DATABASE ... SET. A value a
 * non-superuser set as a placeholder before the library loaded is dropped when this defines it.
 */
#include "postgres.h"

#include "utils/guc.h"

#include "decoding_option.h"

static int	constrained_decoding = 0;

static const struct config_enum_entry options[] = {
	{"default", 0, false},
	{"on", 1, false},
	{"off", 2, false},
	{NULL, 0, false}
};

void
decoding_option_define(void)
{
	DefineCustomEnumVariable("sqlcoder.constrained_decoding",
							 "Overrides sqlcoder's constrained_decoding setting for this session or call.",
							 "default: the setting in sqlcoder.config; on or off: that, whatever the setting says.",
							 &constrained_decoding, 0, options, PGC_SUSET, 0, NULL, NULL, NULL);
}

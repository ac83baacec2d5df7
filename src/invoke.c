/*
 * src/invoke.c: sqlcoder_internal._invoke(op, params), the one entry point of the
 * in-database package. It calls the PL/Python function
 * sqlcoder_internal._invoke_python(op, params, token), which nobody is granted (fmgr
 * calls it here without a privilege check), with a token made for this call.
 *
 * Internal functions that must run only on the package's behalf (the history
 * writes) take the token and refuse any other: a granted role can call them,
 * but outside a call of _invoke there is no current token, and inside one the
 * token lives only in this file and in the package's Python variables, which
 * no SQL the call runs (the model's query, a planted function) can read.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"

#include "invoke.h"

#define TOKEN_BYTES 16
#define TOKEN_CHARS (2 * TOKEN_BYTES)

PG_FUNCTION_INFO_V1(sqlcoder_invoke);

/* The token of the innermost call in progress; "" outside any. */
static char current_token[TOKEN_CHARS + 1] = "";

bool
invoke_token_is_current(const text *token)
{
	if (token == NULL || current_token[0] == '\0' || VARSIZE_ANY_EXHDR(token) != TOKEN_CHARS)
		return false;
	return memcmp(VARDATA_ANY(token), current_token, TOKEN_CHARS) == 0;
}

static void
new_token(char *out)
{
	uint8		raw[TOKEN_BYTES];

	if (!pg_strong_random(raw, sizeof(raw)))
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("sqlcoder: no random bytes for a call token")));
	hex_encode((const char *) raw, TOKEN_BYTES, out);
	out[TOKEN_CHARS] = '\0';
}

Datum
sqlcoder_invoke(PG_FUNCTION_ARGS)
{
	Oid			argtypes[3] = {TEXTOID, JSONBOID, TEXTOID};
	Oid			target;
	FmgrInfo	flinfo;
	LOCAL_FCINFO(inner, 3);
	char		saved[TOKEN_CHARS + 1];
	char		token[TOKEN_CHARS + 1];
	Datum		result;

	/* Schema-qualified: only the extension's owner can create in schema sqlcoder_internal. */
	target = LookupFuncName(list_make2(makeString("sqlcoder_internal"), makeString("_invoke_python")), 3, argtypes,
							false);
	fmgr_info(target, &flinfo);
	new_token(token);
	InitFunctionCallInfoData(*inner, &flinfo, 3, InvalidOid, NULL, NULL);
	inner->args[0].value = PG_GETARG_DATUM(0);
	inner->args[0].isnull = PG_ARGISNULL(0);
	inner->args[1].value = PG_GETARG_DATUM(1);
	inner->args[1].isnull = PG_ARGISNULL(1);
	inner->args[2].value = CStringGetTextDatum(token);
	inner->args[2].isnull = false;

	strlcpy(saved, current_token, sizeof(saved));
	strlcpy(current_token, token, sizeof(current_token));
	PG_TRY();
	{
		result = FunctionCallInvoke(inner);
	}
	PG_FINALLY();
	{
		strlcpy(current_token, saved, sizeof(current_token));
	}
	PG_END_TRY();
	if (inner->isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

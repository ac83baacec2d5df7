/*
 * src/raise_reply.c: sqlcoder_internal._result(sqlcoder_internal._reply), the value of a reply
 * from the PL/Python entry point, or its error raised as PostgreSQL's own.
 *
 * Raised from C so that the error carries no internal CONTEXT line (a
 * PL/pgSQL RAISE adds "PL/pgSQL function sqlcoder_internal._result(...) line N at
 * RAISE" to every error a user sees).
 */
#include "postgres.h"

#include "executor/executor.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(sqlcoder_result);

/* The string value of key in a jsonb object, or NULL when absent or not a string. */
static char *
jsonb_string(Jsonb *jb, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&jb->root, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* A five-character SQLSTATE of digits and upper-case letters, else XX000. */
static int
sqlstate_code(const char *s)
{
	if (s == NULL || strlen(s) != 5)
		return ERRCODE_INTERNAL_ERROR;
	for (int i = 0; i < 5; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z')))
			return ERRCODE_INTERNAL_ERROR;
	/* Class 00 is success: never raise it as an error. */
	if (s[0] == '0' && s[1] == '0')
		return ERRCODE_INTERNAL_ERROR;
	return MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4]);
}

Datum
sqlcoder_result(PG_FUNCTION_ARGS)
{
	HeapTupleHeader reply;
	bool		isnull;
	Datum		value;
	Datum		error;
	Jsonb	   *err;
	char	   *message;
	char	   *detail;
	char	   *hint;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	reply = PG_GETARG_HEAPTUPLEHEADER(0);
	error = GetAttributeByNum(reply, 2, &isnull);
	if (isnull)
	{
		value = GetAttributeByNum(reply, 1, &isnull);
		if (isnull)
			PG_RETURN_NULL();
		PG_RETURN_DATUM(value);
	}
	err = DatumGetJsonbP(error);
	if (!JB_ROOT_IS_OBJECT(err))
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("sqlcoder: unknown error")));
	message = jsonb_string(err, "message");
	detail = jsonb_string(err, "detail");
	hint = jsonb_string(err, "hint");
	ereport(ERROR,
			(errcode(sqlstate_code(jsonb_string(err, "sqlstate"))),
			 errmsg_internal("%s", message ? message : "sqlcoder: unknown error"),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
	PG_RETURN_NULL();			/* not reached */
}

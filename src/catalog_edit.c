/*
 * src/catalog_edit.c: sqlcoder_internal._edit_catalog(op, args), the one way granted
 * roles change join hints, instructions and examples (they are granted SELECT
 * on those tables and nothing else, so they cannot LOCK them either).
 *
 * It calls the SECURITY DEFINER function _edit_catalog_as_owner, granted to
 * nobody (fmgr calls it here without a privilege check), passing the OID of
 * the role calling it; that function applies the rules of who may change
 * what. An example is first checked as the caller (the guard and parse
 * analysis, through sqlcoder_internal._invoke('check_example')), and what the check
 * found replaces what args says, so the tables an example reads are never
 * the caller's word.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(sqlcoder_edit_catalog);

/* args || what check_example found, run as the caller. */
static Datum
checked_example(Datum args)
{
	Oid			types[1] = {JSONBOID};
	Datum		values[1] = {args};
	Datum		result;
	bool		isnull;

	SPI_connect();
	if (SPI_execute_with_args(
		"SELECT $1 OPERATOR(pg_catalog.||) sqlcoder_internal._result(sqlcoder_internal._invoke('check_example', "
		"pg_catalog.jsonb_build_object('question', $1 OPERATOR(pg_catalog.->>) 'question', "
		"'sql', $1 OPERATOR(pg_catalog.->>) 'sql', 'search_path', $1 OPERATOR(pg_catalog.->) 'search_path')))"
		"::pg_catalog.jsonb", 1, types, values, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "sqlcoder: the example check returned nothing");
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "sqlcoder: the example check returned NULL");
	result = SPI_datumTransfer(result, false, -1);
	SPI_finish();
	return result;
}

Datum
sqlcoder_edit_catalog(PG_FUNCTION_ARGS)
{
	Oid			argtypes[3] = {TEXTOID, JSONBOID, OIDOID};
	Oid			target;
	FmgrInfo	flinfo;
	LOCAL_FCINFO(inner, 3);
	Datum		args;
	Datum		result;
	char	   *op;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("sqlcoder_internal._edit_catalog needs op and args")));
	op = text_to_cstring(PG_GETARG_TEXT_PP(0));
	args = PG_GETARG_DATUM(1);
	if (strcmp(op, "add_example") == 0)
		args = checked_example(args);
	/* Schema-qualified: only the extension's owner can create in schema sqlcoder_internal. */
	target = LookupFuncName(list_make2(makeString("sqlcoder_internal"), makeString("_edit_catalog_as_owner")), 3,
							argtypes, false);
	fmgr_info(target, &flinfo);
	InitFunctionCallInfoData(*inner, &flinfo, 3, InvalidOid, NULL, NULL);
	inner->args[0].value = PG_GETARG_DATUM(0);
	inner->args[0].isnull = false;
	inner->args[1].value = args;
	inner->args[1].isnull = false;
	inner->args[2].value = ObjectIdGetDatum(GetUserId());
	inner->args[2].isnull = false;
	result = FunctionCallInvoke(inner);
	if (inner->isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

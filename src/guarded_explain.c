/*
 * src/guarded_explain.c: sqlcoder_internal._readonly_explain(), the planner's cost of
 * the query the guard is about to run, planned with the function policy
 * armed (policy_hook.c): planning folds constants, evaluates stable functions
 * for estimates, reads index expressions and predicates, and can inline SQL
 * functions, so code a planted object carries can run here.
 *
 *   sqlcoder_internal._readonly_explain(query text, caller_search_path text) RETURNS json
 *
 * Declared SET transaction_read_only = on and SET search_path: nothing it
 * plans can write, and the caller's path applies to this call alone.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "policy_hook.h"

PG_FUNCTION_INFO_V1(sqlcoder_readonly_explain);

Datum
sqlcoder_readonly_explain(PG_FUNCTION_ARGS)
{
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	StringInfoData statement;
	const char *previous;
	MemoryContext caller = CurrentMemoryContext;
	char	   *plan;
	text	   *result;

	if (list_length(raw_parser(query, RAW_PARSE_DEFAULT)) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("sqlcoder: the query must be exactly one statement")));

	initStringInfo(&statement);
	appendStringInfo(&statement, "EXPLAIN (FORMAT JSON) %s", query);
	/* Local to this call: the SET clause restores the path when it returns. */
	(void) set_config_option("search_path", path, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	previous = policy_hook_arm("planning the query for its cost (EXPLAIN)");
	PG_TRY();
	{
		int			rc = SPI_execute(statement.data, false, 0);

		if (rc != SPI_OK_UTILITY || SPI_tuptable == NULL || SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_CURSOR_DEFINITION),
					 errmsg("sqlcoder: the query must be exactly one statement that returns rows")));
	}
	PG_FINALLY();
	{
		policy_hook_restore(previous);
	}
	PG_END_TRY();
	plan = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	MemoryContextSwitchTo(caller);	/* SPI_finish frees SPI's memory */
	result = cstring_to_text(plan);
	SPI_finish();
	PG_RETURN_TEXT_P(result);
}

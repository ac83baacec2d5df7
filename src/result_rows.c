/*
 * src/result_rows.c: run one query read-only and keep its rows, bounded in
 * rows and bytes, until the SQL wrapper hands them to the caller.
 *
 * Why C: the query must run inside PL/Python's rolled-back subtransaction,
 * under its watchdog, but its rows must not pass through Python (a Python
 * list of every row, then one JSON text of the list, then json parsed back
 * into rows cost 7x the result in backend memory). Here each row the
 * executor produces goes straight into a tuplestore (work_mem in memory, the
 * rest in a temporary file), counted as it arrives; past max_rows or
 * max_bytes the executor is told to stop at once. For run and execute each
 * row is first turned into the JSON text row_to_json gives (src/row_json.c),
 * counted exactly, and refused before that text is built when it cannot fit.
 * The tuplestore lives in
 * the top transaction's memory and resource owner, so the subtransaction's
 * rollback keeps it, and sqlcoder_internal._result_rows(token) copies it into the
 * caller's result and frees it. Whatever is not taken is freed when the
 * transaction ends.
 *
 *   sqlcoder_internal._run_readonly(query, caller_search_path, max_rows, max_bytes, as_json)
 *     -> (token, row_count, bytes, truncated, exceeded)
 *   sqlcoder_internal._result_rows(token) -> SETOF json
 *   sqlcoder.run_typed(question, instructions, max_rows) -> SETOF record   (result_typed.c)
 *   sqlcoder.execute_typed(sql, max_rows) -> SETOF record                  (result_typed.c)
 *
 * run and execute keep one json column per row (as_json: row_to_json's text
 * of each query row); run_typed and execute_typed keep the query's own columns
 * and types, and hand them back in the shape of the caller's column
 * definition list: a bigint stays a bigint, a numeric keeps every digit.
 *
 * This file holds the first two; the kept results are in result_stash.c,
 * the receiver that fills them in result_receiver.c, declarations shared by
 * these files in result.h.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "policy_hook.h"
#include "result.h"

PG_FUNCTION_INFO_V1(sqlcoder_run_readonly);
PG_FUNCTION_INFO_V1(sqlcoder_result_rows);

/*
 * sqlcoder_internal._run_readonly(query text, caller_search_path text, max_rows bigint, max_bytes bigint,
 *                        as_json boolean)
 * RETURNS TABLE (token bigint, row_count bigint, bytes bigint, truncated boolean, exceeded boolean)
 *
 * Declared SET transaction_read_only = on and SET search_path: PostgreSQL
 * refuses every write during the call and restores the path afterwards.
 * token is NULL when the result passed max_bytes (its rows are freed then).
 */
Datum
sqlcoder_run_readonly(PG_FUNCTION_ARGS)
{
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		max_rows = PG_GETARG_INT64(2);
	int64		max_bytes = PG_GETARG_INT64(3);
	bool		as_json = PG_GETARG_BOOL(4);
	TupleDesc	result_desc;
	SPIPlanPtr	plan;
	SPIExecuteOptions options;
	DestReceiver *receiver;
	ResultCounts counts;
	Stash	   *stash;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	const char *previous;

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "sqlcoder_internal._run_readonly must return a composite");
	result_desc = BlessTupleDesc(result_desc);
	if (max_rows < 0 || max_bytes < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sqlcoder: max_rows and max_bytes must not be negative")));

	if (result_stash_waiting() >= MAX_WAITING_RESULTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("sqlcoder: %d results of this transaction were never returned", result_stash_waiting()),
				 errhint("Call sqlcoder.run or sqlcoder.execute; each returns its rows at once.")));

	/* Local to this call: the SET clause restores the path when it returns. */
	(void) set_config_option("search_path", path, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* The function policy holds from analysis to the last row built (policy_hook.c). */
	previous = policy_hook_arm("analyzing the query");
	PG_TRY();
	{
		plan = SPI_prepare(query, 0, NULL);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (!SPI_is_cursor_plan(plan))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_CURSOR_DEFINITION),
					 errmsg("sqlcoder: the query must be exactly one statement that returns rows")));
		SPI_freeplan(plan);
	}
	PG_FINALLY();
	{
		policy_hook_restore(previous);
	}
	PG_END_TRY();

	stash = result_stash_create();

	receiver = result_receiver_create(stash, max_rows, max_bytes, as_json);

	memset(&options, 0, sizeof(options));
	options.dest = receiver;
	previous = policy_hook_arm("planning and running the query and building its rows");
	PG_TRY();
	{
		/*
		 * Run as a one-shot plan, parsed again: a prepared plan is copied
		 * once planned, and with it every constant the planner folded (a
		 * constant repeat('x', 100000000) is a 100 MB constant in the plan).
		 * The prepared plan above only checked the statement.
		 */
		int			rc = SPI_execute_extended(query, &options);

		if (rc < 0)
			elog(ERROR, "SPI_execute_extended failed: %s", SPI_result_code_string(rc));
	}
	PG_CATCH();
	{
		policy_hook_restore(previous);
		result_stash_free(stash);
		PG_RE_THROW();
	}
	PG_END_TRY();
	policy_hook_restore(previous);
	SPI_finish();

	counts = result_receiver_counts(receiver);
	if (counts.exceeded)
	{
		result_stash_free(stash);
		nulls[0] = true;
	}
	else
		values[0] = Int64GetDatum(result_stash_keep(stash));
	values[1] = Int64GetDatum(counts.rows);
	values[2] = Int64GetDatum(counts.bytes);
	values[3] = BoolGetDatum(counts.truncated);
	values[4] = BoolGetDatum(counts.exceeded);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(result_desc, values, nulls)));
}

void
result_check_materialize(ReturnSetInfo *rsinfo, const char *name)
{
	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) || !(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("sqlcoder: %s must be called where a set of rows is accepted", name)));
}

/*
 * sqlcoder_internal._result_rows(token bigint) RETURNS SETOF json
 *
 * The rows _run_readonly kept under token, in order, each once: they are
 * copied into the caller's own tuplestore (work_mem, then a temporary file)
 * and the kept ones freed. One call, not one per row: the function's SET
 * search_path clause would otherwise cost a GUC save and restore per row.
 */
Datum
sqlcoder_result_rows(PG_FUNCTION_ARGS)
{
	int64		token = PG_GETARG_INT64(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Stash	   *stash;
	MemoryContext old;
	Tuplestorestate *out;
	TupleDesc	desc;
	TupleTableSlot *slot;

	result_check_materialize(rsinfo, "_result_rows");
	stash = result_take_stash(token);
	if (stash->desc->natts != 1 || TupleDescAttr(stash->desc, 0)->atttypid != JSONOID)
	{
		result_stash_free(stash);
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("sqlcoder: result %lld is not one json column per row", (long long) token)));
	}

	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	desc = CreateTupleDescCopy(stash->desc);
	out = tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0, false, work_mem);
	MemoryContextSwitchTo(old);

	PG_TRY();
	{
		slot = MakeSingleTupleTableSlot(stash->desc, &TTSOpsMinimalTuple);
		/* Up to max_rows rows, some read back from a file: a cancel acts between them. */
		while (result_stash_read(stash, slot))
		{
			tuplestore_puttupleslot(out, slot);
			CHECK_FOR_INTERRUPTS();
		}
		ExecDropSingleTupleTableSlot(slot);
	}
	PG_FINALLY();
	{
		result_stash_free(stash);
	}
	PG_END_TRY();

	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = out;
	rsinfo->setDesc = desc;
	return (Datum) 0;
}

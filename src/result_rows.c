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
 * max_bytes the executor is told to stop at once. The tuplestore lives in
 * the top transaction's memory and resource owner, so the subtransaction's
 * rollback keeps it, and sqlcoder._result_rows(token) copies it into the
 * caller's result and frees it. Whatever is not taken is freed when the
 * transaction ends.
 *
 *   sqlcoder._run_readonly(query, caller_search_path, max_rows, max_bytes)
 *     -> (token, row_count, bytes, truncated, exceeded)
 *   sqlcoder._result_rows(token) -> SETOF json
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/pg_list.h"
#include "tcop/dest.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(sqlcoder_run_readonly);
PG_FUNCTION_INFO_V1(sqlcoder_result_rows);

/* One kept result, allocated in its own memory context: freeing it frees it all. */
typedef struct Stash
{
	int64		token;
	MemoryContext cxt;			/* child of TopTransactionContext */
	Tuplestorestate *store;
	TupleDesc	desc;
} Stash;

/* Results not yet taken, in TopTransactionContext; reset at transaction end. */
static List *stashes = NIL;

/*
 * Each kept result may hold work_mem in memory until it is taken. The SQL
 * wrappers take theirs at once, so more than a few waiting means someone
 * calls the internals in a loop: refused, so memory stays bounded.
 */
#define MAX_WAITING_RESULTS 8
static int64 next_token = 1;
static bool callback_registered = false;

typedef struct StashReceiver
{
	DestReceiver pub;
	Stash	   *stash;
	int64		max_rows;
	int64		max_bytes;
	int64		rows;
	int64		bytes;
	bool		truncated;
	bool		exceeded;
} StashReceiver;

/* The stash is gone afterwards: its struct lived in its own context. */
static void
stash_free(Stash *stash)
{
	MemoryContext cxt = stash->cxt;

	tuplestore_end(stash->store);	/* closes its temporary file */
	MemoryContextDelete(cxt);
}

static void
at_xact_end(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			/* close unclaimed results' files before commit would call them leaked */
			foreach(lc, stashes)
				stash_free((Stash *) lfirst(lc));
			stashes = NIL;
			break;
		default:
			/* abort: the resource owner closed the files, the memory is gone */
			stashes = NIL;
			break;
	}
}

static Stash *
stash_create(TupleDesc desc)
{
	MemoryContext cxt;
	MemoryContext old;
	ResourceOwner old_owner = CurrentResourceOwner;
	Stash	   *stash;

	if (!callback_registered)
	{
		RegisterXactCallback(at_xact_end, NULL);
		callback_registered = true;
	}
	cxt = AllocSetContextCreate(TopTransactionContext, "sqlcoder result", ALLOCSET_DEFAULT_SIZES);
	stash = MemoryContextAllocZero(cxt, sizeof(Stash));
	stash->cxt = cxt;
	old = MemoryContextSwitchTo(cxt);
	/* The tuplestore's temporary file belongs to the owner current at its creation. */
	CurrentResourceOwner = TopTransactionResourceOwner;
	PG_TRY();
	{
		stash->store = tuplestore_begin_heap(false, false, work_mem);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = old_owner;
	}
	PG_END_TRY();
	stash->desc = CreateTupleDescCopy(desc);
	MemoryContextSwitchTo(old);
	return stash;
}

static void
receiver_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	if (typeinfo->natts != 1 || TupleDescAttr(typeinfo, 0)->atttypid != JSONOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("sqlcoder: the query must return exactly one json column")));
}

/* false stops the executor: the row cap or the byte limit is reached. */
static bool
receiver_receive(TupleTableSlot *slot, DestReceiver *self)
{
	StashReceiver *r = (StashReceiver *) self;
	bool		isnull;
	Datum		value;

	if (r->rows >= r->max_rows)
	{
		r->truncated = true;
		return false;
	}
	value = slot_getattr(slot, 1, &isnull);
	r->bytes += isnull ? 4 : (int64) (toast_raw_datum_size(value) - VARHDRSZ);
	if (r->bytes > r->max_bytes)
	{
		r->exceeded = true;
		return false;
	}
	tuplestore_puttupleslot(r->stash->store, slot);
	r->rows++;
	return true;
}

static void
receiver_noop(DestReceiver *self)
{
}

/*
 * sqlcoder._run_readonly(query text, caller_search_path text, max_rows bigint, max_bytes bigint)
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
	TupleDesc	result_desc;
	TupleDesc	row_desc;
	SPIPlanPtr	plan;
	SPIExecuteOptions options;
	StashReceiver receiver;		/* on the stack: read after SPI_finish freed SPI's memory */
	Stash	   *stash;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "sqlcoder._run_readonly must return a composite");
	result_desc = BlessTupleDesc(result_desc);
	if (max_rows < 0 || max_bytes < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sqlcoder: max_rows and max_bytes must not be negative")));

	if (list_length(stashes) >= MAX_WAITING_RESULTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("sqlcoder: %d results of this transaction were never returned", list_length(stashes)),
				 errhint("Call sqlcoder.run or sqlcoder.execute; each returns its rows at once.")));

	/* Local to this call: the SET clause restores the path when it returns. */
	(void) set_config_option("search_path", path, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (!SPI_is_cursor_plan(plan))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_CURSOR_DEFINITION),
				 errmsg("sqlcoder: the query must be exactly one statement that returns rows")));

	row_desc = CreateTemplateTupleDesc(1);
	TupleDescInitEntry(row_desc, (AttrNumber) 1, "row", JSONOID, -1, 0);
	stash = stash_create(row_desc);

	memset(&receiver, 0, sizeof(receiver));
	receiver.pub.receiveSlot = receiver_receive;
	receiver.pub.rStartup = receiver_startup;
	receiver.pub.rShutdown = receiver_noop;
	receiver.pub.rDestroy = receiver_noop;
	receiver.pub.mydest = DestNone;
	receiver.stash = stash;
	receiver.max_rows = max_rows;
	receiver.max_bytes = max_bytes;

	memset(&options, 0, sizeof(options));
	options.dest = (DestReceiver *) &receiver;
	PG_TRY();
	{
		int			rc = SPI_execute_plan_extended(plan, &options);

		if (rc < 0)
			elog(ERROR, "SPI_execute_plan_extended failed: %s", SPI_result_code_string(rc));
	}
	PG_CATCH();
	{
		stash_free(stash);
		PG_RE_THROW();
	}
	PG_END_TRY();
	SPI_finish();

	if (receiver.exceeded)
	{
		stash_free(stash);
		nulls[0] = true;
	}
	else
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		stash->token = next_token++;
		stashes = lappend(stashes, stash);
		MemoryContextSwitchTo(old);
		values[0] = Int64GetDatum(stash->token);
	}
	values[1] = Int64GetDatum(receiver.rows);
	values[2] = Int64GetDatum(receiver.bytes);
	values[3] = BoolGetDatum(receiver.truncated);
	values[4] = BoolGetDatum(receiver.exceeded);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(result_desc, values, nulls)));
}

/*
 * sqlcoder._result_rows(token bigint) RETURNS SETOF json
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
	Stash	   *stash = NULL;
	ListCell   *lc;
	MemoryContext old;
	Tuplestorestate *out;
	TupleDesc	desc;
	TupleTableSlot *slot;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) || !(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("sqlcoder: _result_rows must be called where a set of rows is accepted")));
	foreach(lc, stashes)
	{
		Stash	   *candidate = (Stash *) lfirst(lc);

		if (candidate->token == token)
		{
			stash = candidate;
			stashes = foreach_delete_current(stashes, lc);
			break;
		}
	}
	if (stash == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("sqlcoder: no result %lld in this transaction", (long long) token),
				 errhint("Call sqlcoder.run or sqlcoder.execute; this function only returns their rows.")));

	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	desc = CreateTupleDescCopy(stash->desc);
	out = tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0, false, work_mem);
	MemoryContextSwitchTo(old);

	PG_TRY();
	{
		slot = MakeSingleTupleTableSlot(stash->desc, &TTSOpsMinimalTuple);
		for (;;)
		{
			bool		found;

			/* A row read back from the file is allocated here; the slot frees it at the next read. */
			old = MemoryContextSwitchTo(stash->cxt);
			found = tuplestore_gettupleslot(stash->store, true, false, slot);
			MemoryContextSwitchTo(old);
			if (!found)
				break;
			tuplestore_puttupleslot(out, slot);
			CHECK_FOR_INTERRUPTS();
		}
		ExecDropSingleTupleTableSlot(slot);
	}
	PG_FINALLY();
	{
		stash_free(stash);
	}
	PG_END_TRY();

	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = out;
	rsinfo->setDesc = desc;
	return (Datum) 0;
}

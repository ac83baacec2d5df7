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
 * rollback keeps it, and sqlcoder._result_rows(token) copies it into the
 * caller's result and frees it. Whatever is not taken is freed when the
 * transaction ends.
 *
 *   sqlcoder._run_readonly(query, caller_search_path, max_rows, max_bytes, as_json)
 *     -> (token, row_count, bytes, truncated, exceeded)
 *   sqlcoder._result_rows(token) -> SETOF json
 *   sqlcoder.run_typed(question, instructions, max_rows) -> SETOF record
 *   sqlcoder.execute_typed(sql, max_rows) -> SETOF record
 *
 * run and execute keep one json column per row (as_json: row_to_json's text
 * of each query row); run_typed and execute_typed keep the query's own columns
 * and types, and hand them back in the shape of the caller's column
 * definition list: a bigint stays a bigint, a numeric keeps every digit.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/pg_list.h"
#include "tcop/dest.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/tuplestore.h"

#include "row_json.h"

PG_FUNCTION_INFO_V1(sqlcoder_run_readonly);
PG_FUNCTION_INFO_V1(sqlcoder_result_rows);
PG_FUNCTION_INFO_V1(sqlcoder_run_typed);
PG_FUNCTION_INFO_V1(sqlcoder_execute_typed);

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
	bool		as_json;		/* keep each row as its row_to_json text */
	RowJson    *json;			/* as_json: turns the query's rows into that text */
	MemoryContext row_cxt;		/* as_json: one row's conversion, reset after each */
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
stash_create(void)
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
	MemoryContextSwitchTo(old);
	return stash;
}

/* The kept rows have the query's own columns, or one json column (as_json). */
static void
receiver_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	StashReceiver *r = (StashReceiver *) self;
	Stash	   *stash = r->stash;
	MemoryContext old = MemoryContextSwitchTo(stash->cxt);

	if (r->as_json)
	{
		stash->desc = CreateTemplateTupleDesc(1);
		TupleDescInitEntry(stash->desc, (AttrNumber) 1, "row", JSONOID, -1, 0);
	}
	else
		stash->desc = CreateTupleDescCopy(typeinfo);
	MemoryContextSwitchTo(old);
	if (r->as_json)
	{
		/* In the executor's query context: both live as long as the query. */
		r->json = row_json_start(typeinfo);
		r->row_cxt = AllocSetContextCreate(CurrentMemoryContext, "sqlcoder row", ALLOCSET_DEFAULT_SIZES);
	}
}

/*
 * as_json: a row is refused as soon as its JSON cannot fit: first by a lower
 * bound read from its datums as they are (nothing fetched from TOAST, nothing
 * copied), then by its exact JSON length, before that text is built. What
 * measuring and building allocate goes with the row's context.
 */
static bool
receive_json(StashReceiver *r, TupleTableSlot *slot)
{
	int64		length;
	MemoryContext old;
	Datum		json;
	bool		isnull = false;

	length = row_json_lower_bound(r->json, slot);
	if (r->bytes + length <= r->max_bytes)
	{
		old = MemoryContextSwitchTo(r->row_cxt);
		length = row_json_measure(r->json, slot);
		MemoryContextSwitchTo(old);
	}
	r->bytes += length;
	if (r->bytes > r->max_bytes)
	{
		MemoryContextReset(r->row_cxt);
		r->exceeded = true;
		return false;
	}
	old = MemoryContextSwitchTo(r->row_cxt);
	json = row_json_build(r->json);
	MemoryContextSwitchTo(old);
	tuplestore_putvalues(r->stash->store, r->stash->desc, &json, &isnull);	/* copies it */
	MemoryContextReset(r->row_cxt);
	r->rows++;
	return true;
}

/* false stops the executor: the row cap or the byte limit is reached. */
static bool
receiver_receive(TupleTableSlot *slot, DestReceiver *self)
{
	StashReceiver *r = (StashReceiver *) self;
	TupleDesc	desc = slot->tts_tupleDescriptor;
	Datum	   *values;
	bool		detoasted = false;

	if (r->rows >= r->max_rows)
	{
		r->truncated = true;
		return false;
	}
	if (r->as_json)
		return receive_json(r, slot);
	slot_getallattrs(slot);
	values = slot->tts_values;
	/* Counted as text would count it, roughly: a NULL as 4 bytes ("null"). */
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Datum		value = slot->tts_values[i];

		if (slot->tts_isnull[i])
			r->bytes += 4;
		else if (att->attlen == -1)
			r->bytes += (int64) (toast_raw_datum_size(value) - VARHDRSZ);
		else if (att->attlen == -2)
			r->bytes += (int64) strlen(DatumGetCString(value));
		else
			r->bytes += att->attlen;
	}
	if (r->bytes > r->max_bytes)
	{
		r->exceeded = true;
		return false;
	}
	/* A column read straight from a table may be a TOAST pointer: keep the value itself. */
	for (int i = 0; i < desc->natts; i++)
	{
		if (!slot->tts_isnull[i] && TupleDescAttr(desc, i)->attlen == -1 &&
			VARATT_IS_EXTERNAL(DatumGetPointer(slot->tts_values[i])))
		{
			if (!detoasted)
			{
				values = palloc(desc->natts * sizeof(Datum));
				memcpy(values, slot->tts_values, desc->natts * sizeof(Datum));
				detoasted = true;
			}
			values[i] = PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(values[i])));
		}
	}
	if (detoasted)
	{
		tuplestore_putvalues(r->stash->store, desc, values, slot->tts_isnull);
		for (int i = 0; i < desc->natts; i++)
			if (values[i] != slot->tts_values[i])
				pfree(DatumGetPointer(values[i]));
		pfree(values);
	}
	else
		tuplestore_puttupleslot(r->stash->store, slot);
	r->rows++;
	return true;
}

static void
receiver_noop(DestReceiver *self)
{
}

/*
 * sqlcoder._run_readonly(query text, caller_search_path text, max_rows bigint, max_bytes bigint,
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
	SPI_freeplan(plan);

	stash = stash_create();

	memset(&receiver, 0, sizeof(receiver));
	receiver.pub.receiveSlot = receiver_receive;
	receiver.pub.rStartup = receiver_startup;
	receiver.pub.rShutdown = receiver_noop;
	receiver.pub.rDestroy = receiver_noop;
	receiver.pub.mydest = DestNone;
	receiver.stash = stash;
	receiver.max_rows = max_rows;
	receiver.max_bytes = max_bytes;
	receiver.as_json = as_json;

	memset(&options, 0, sizeof(options));
	options.dest = (DestReceiver *) &receiver;
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

/* The rows kept under token, removed from the waiting list: the caller frees them (stash_free). */
static Stash *
take_stash(int64 token)
{
	ListCell   *lc;

	foreach(lc, stashes)
	{
		Stash	   *candidate = (Stash *) lfirst(lc);

		if (candidate->token == token)
		{
			stashes = foreach_delete_current(stashes, lc);
			if (candidate->desc == NULL)
			{
				stash_free(candidate);
				break;
			}
			return candidate;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("sqlcoder: no result %lld in this transaction", (long long) token),
			 errhint("Call sqlcoder.run or sqlcoder.execute; this function only returns their rows.")));
	return NULL;				/* keep the compiler quiet */
}

static void
check_materialize(ReturnSetInfo *rsinfo, const char *name)
{
	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) || !(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("sqlcoder: %s must be called where a set of rows is accepted", name)));
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
	Stash	   *stash;
	MemoryContext old;
	Tuplestorestate *out;
	TupleDesc	desc;
	TupleTableSlot *slot;

	check_materialize(rsinfo, "_result_rows");
	stash = take_stash(token);
	if (stash->desc->natts != 1 || TupleDescAttr(stash->desc, 0)->atttypid != JSONOID)
	{
		stash_free(stash);
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

/* "name type, ..." of a row type, as a column definition list would spell it. */
static char *
describe_columns(TupleDesc desc)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		appendStringInfo(&buf, "%s%s %s", i ? ", " : "", quote_identifier(NameStr(att->attname)),
						 format_type_with_typemod(att->atttypid, att->atttypmod));
	}
	return buf.data;
}

typedef struct Conversion
{
	bool		needed;			/* the list asks for another type (or typmod) than the query's */
	FmgrInfo	output;
	FmgrInfo	input;
	Oid			ioparam;
	int32		typmod;
} Conversion;

typedef struct ConversionContext
{
	TupleDesc	from;
	TupleDesc	to;
	int			column;			/* 0-based; -1 when not converting */
} ConversionContext;

static void
conversion_context(void *arg)
{
	ConversionContext *c = (ConversionContext *) arg;

	if (c->column >= 0)
		errcontext("sqlcoder: column %d (%s) of the query, %s, read as %s", c->column + 1,
				   NameStr(TupleDescAttr(c->from, c->column)->attname),
				   format_type_with_typemod(TupleDescAttr(c->from, c->column)->atttypid,
											TupleDescAttr(c->from, c->column)->atttypmod),
				   format_type_with_typemod(TupleDescAttr(c->to, c->column)->atttypid,
											TupleDescAttr(c->to, c->column)->atttypmod));
}

/*
 * Run the SQL wrapper's call of the entry point (op "run" or "execute" with
 * typed = true) and return the kept rows in the shape of the caller's column
 * definition list: columns of the same type pass as they are; another type
 * is read through the query type's output and the listed type's input
 * function, as a cast from text would. Runs as the caller (no SET clause),
 * so current_schemas(true) in the call is the caller's path.
 */
static Datum
typed_rows(FunctionCallInfo fcinfo, const char *call_sql, int nargs, Oid *argtypes)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TupleDesc	expected;
	Datum		args[3];
	char		argnulls[3];
	bool		isnull;
	int64		token;
	Stash	   *stash;
	MemoryContext old;
	MemoryContext per_row;
	Tuplestorestate *out;
	TupleDesc	desc;
	Conversion *conv;
	ConversionContext cctx;
	ErrorContextCallback callback;

	check_materialize(rsinfo, "this function");
	expected = rsinfo->expectedDesc;
	if (expected == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("a column definition list is required for sqlcoder's typed results"),
				 errhint("SELECT * FROM sqlcoder.execute_typed('SELECT name, price FROM products') "
						 "AS r(name text, price numeric);")));
	for (int i = 0; i < nargs; i++)
	{
		args[i] = PG_GETARG_DATUM(i);
		argnulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(call_sql, nargs, argtypes, args, argnulls, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "sqlcoder: the typed call returned no token");
	token = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		elog(ERROR, "sqlcoder: the typed call returned a NULL token");
	SPI_finish();

	stash = take_stash(token);
	PG_TRY();
	{
		if (stash->desc->natts != expected->natts)
		{
			char	   *columns = describe_columns(stash->desc);

			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("sqlcoder: the query returns %d columns; the column definition list has %d",
							stash->desc->natts, expected->natts),
					 errdetail("The query's columns: %s.", columns),
					 errhint("List one column per query column, in order, e.g. AS r(%s).", columns)));
		}
		conv = palloc0(expected->natts * sizeof(Conversion));
		for (int i = 0; i < expected->natts; i++)
		{
			Form_pg_attribute from = TupleDescAttr(stash->desc, i);
			Form_pg_attribute to = TupleDescAttr(expected, i);
			Oid			fn;
			bool		varlena;

			if (from->atttypid == to->atttypid && (to->atttypmod < 0 || to->atttypmod == from->atttypmod))
				continue;
			conv[i].needed = true;
			getTypeOutputInfo(from->atttypid, &fn, &varlena);
			fmgr_info(fn, &conv[i].output);
			getTypeInputInfo(to->atttypid, &fn, &conv[i].ioparam);
			fmgr_info(fn, &conv[i].input);
			conv[i].typmod = to->atttypmod;
		}

		old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		desc = CreateTupleDescCopy(expected);
		out = tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0, false, work_mem);
		MemoryContextSwitchTo(old);
		per_row = AllocSetContextCreate(CurrentMemoryContext, "sqlcoder typed row", ALLOCSET_DEFAULT_SIZES);

		cctx.from = stash->desc;
		cctx.to = expected;
		cctx.column = -1;
		callback.callback = conversion_context;
		callback.arg = &cctx;
		callback.previous = error_context_stack;
		error_context_stack = &callback;
		{
			TupleTableSlot *slot = MakeSingleTupleTableSlot(stash->desc, &TTSOpsMinimalTuple);
			Datum	   *values = palloc(expected->natts * sizeof(Datum));
			bool	   *nulls = palloc(expected->natts * sizeof(bool));

			for (;;)
			{
				bool		found;

				old = MemoryContextSwitchTo(stash->cxt);
				found = tuplestore_gettupleslot(stash->store, true, false, slot);
				MemoryContextSwitchTo(old);
				if (!found)
					break;
				slot_getallattrs(slot);
				old = MemoryContextSwitchTo(per_row);
				for (int i = 0; i < expected->natts; i++)
				{
					char	   *text = NULL;

					values[i] = slot->tts_values[i];
					nulls[i] = slot->tts_isnull[i];
					if (!conv[i].needed)
						continue;
					cctx.column = i;
					if (!nulls[i])
						text = OutputFunctionCall(&conv[i].output, values[i]);
					values[i] = InputFunctionCall(&conv[i].input, text, conv[i].ioparam, conv[i].typmod);
					nulls[i] = text == NULL;
					cctx.column = -1;
				}
				MemoryContextSwitchTo(old);
				tuplestore_putvalues(out, desc, values, nulls);
				MemoryContextReset(per_row);
				CHECK_FOR_INTERRUPTS();
			}
			ExecDropSingleTupleTableSlot(slot);
		}
		error_context_stack = callback.previous;
		MemoryContextDelete(per_row);
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

/* sqlcoder.run_typed(question text, instructions text, max_rows integer) RETURNS SETOF record */
Datum
sqlcoder_run_typed(PG_FUNCTION_ARGS)
{
	Oid			types[3] = {TEXTOID, TEXTOID, INT4OID};

	return typed_rows(fcinfo,
					  "SELECT sqlcoder._result(sqlcoder._invoke('run', pg_catalog.jsonb_build_object("
					  "'question', $1, 'instructions', $2, 'max_rows', $3, "
					  "'caller_path', pg_catalog.current_schemas(true), 'typed', true)))::pg_catalog.int8",
					  3, types);
}

/* sqlcoder.execute_typed(sql text, max_rows integer) RETURNS SETOF record */
Datum
sqlcoder_execute_typed(PG_FUNCTION_ARGS)
{
	Oid			types[2] = {TEXTOID, INT4OID};

	return typed_rows(fcinfo,
					  "SELECT sqlcoder._result(sqlcoder._invoke('execute', pg_catalog.jsonb_build_object("
					  "'sql', $1, 'max_rows', $2, "
					  "'caller_path', pg_catalog.current_schemas(true), 'typed', true)))::pg_catalog.int8",
					  2, types);
}

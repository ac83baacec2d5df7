/*
 * src/result_typed.c: sqlcoder.run_typed() and sqlcoder.execute_typed(): run
 * the SQL wrapper's call (op "run" or "execute", typed), then hand the kept
 * rows back in the shape of the caller's column definition list, converting
 * a column through text where the listed type differs from the query's.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "result.h"

PG_FUNCTION_INFO_V1(sqlcoder_run_typed);
PG_FUNCTION_INFO_V1(sqlcoder_execute_typed);

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
	Datum		args[4];
	char		argnulls[4];
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

	result_check_materialize(rsinfo, "this function");
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

	stash = result_take_stash(token);
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

			/* Up to max_rows rows, each converted: a cancel acts between them. */
			while (result_stash_read(stash, slot))
			{
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
		result_stash_free(stash);
	}
	PG_END_TRY();

	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = out;
	rsinfo->setDesc = desc;
	return (Datum) 0;
}

/*
 * sqlcoder.run_typed(question text, instructions text, max_rows integer[, follow_up bigint])
 * RETURNS SETOF record; 0.3.0 declared it without follow_up.
 */
Datum
sqlcoder_run_typed(PG_FUNCTION_ARGS)
{
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, INT8OID};

	if (PG_NARGS() < 4)
		return typed_rows(fcinfo,
						  "SELECT sqlcoder_internal._result(sqlcoder_internal._invoke('run', pg_catalog.jsonb_build_object("
						  "'question', $1, 'instructions', $2, 'max_rows', $3, "
						  "'caller_path', pg_catalog.current_schemas(true), 'typed', true)))::pg_catalog.int8",
						  3, types);
	return typed_rows(fcinfo,
					  "SELECT sqlcoder_internal._result(sqlcoder_internal._invoke('run', pg_catalog.jsonb_build_object("
					  "'question', $1, 'instructions', $2, 'max_rows', $3, 'follow_up', $4, "
					  "'caller_path', pg_catalog.current_schemas(true), 'typed', true)))::pg_catalog.int8",
					  4, types);
}

/* sqlcoder.execute_typed(sql text, max_rows integer) RETURNS SETOF record */
Datum
sqlcoder_execute_typed(PG_FUNCTION_ARGS)
{
	Oid			types[2] = {TEXTOID, INT4OID};

	return typed_rows(fcinfo,
					  "SELECT sqlcoder_internal._result(sqlcoder_internal._invoke('execute', pg_catalog.jsonb_build_object("
					  "'sql', $1, 'max_rows', $2, "
					  "'caller_path', pg_catalog.current_schemas(true), 'typed', true)))::pg_catalog.int8",
					  2, types);
}

/*
 * src/result_receiver.c: the DestReceiver that puts each row the executor
 * produces into a kept result, counted as it arrives, and tells the executor
 * to stop at max_rows or past max_bytes. Typed mode keeps the query's own
 * columns (TOAST pointers replaced by their values); as_json keeps one json
 * column, each row's row_to_json text (src/row_json.c), refused before that
 * text is built when it cannot fit.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "utils/memutils.h"

#include "result.h"

typedef struct StashReceiver
{
	DestReceiver pub;
	Stash	   *stash;
	int64		max_rows;
	int64		max_bytes;
	ResultCounts counts;
	bool		as_json;		/* keep each row as its row_to_json text */
	RowJson    *json;			/* as_json: turns the query's rows into that text */
	MemoryContext row_cxt;		/* as_json: one row's conversion, reset after each */
} StashReceiver;

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
	if (r->counts.bytes + length <= r->max_bytes)
	{
		old = MemoryContextSwitchTo(r->row_cxt);
		length = row_json_measure(r->json, slot);
		MemoryContextSwitchTo(old);
	}
	r->counts.bytes += length;
	if (r->counts.bytes > r->max_bytes)
	{
		MemoryContextReset(r->row_cxt);
		r->counts.exceeded = true;
		return false;
	}
	old = MemoryContextSwitchTo(r->row_cxt);
	json = row_json_build(r->json);
	MemoryContextSwitchTo(old);
	tuplestore_putvalues(r->stash->store, r->stash->desc, &json, &isnull);	/* copies it */
	MemoryContextReset(r->row_cxt);
	r->counts.rows++;
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

	if (r->counts.rows >= r->max_rows)
	{
		r->counts.truncated = true;
		return false;
	}
	if (r->as_json)
		return receive_json(r, slot);
	slot_getallattrs(slot);
	values = slot->tts_values;
	/*
	 * Counted as text would count it, roughly: a NULL as 4 bytes ("null").
	 * This loop and the next are over the row's columns (at most 1,664):
	 * no interrupt check needed, the executor checks between rows.
	 */
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Datum		value = slot->tts_values[i];

		if (slot->tts_isnull[i])
			r->counts.bytes += 4;
		else if (att->attlen == -1)
			r->counts.bytes += (int64) (toast_raw_datum_size(value) - VARHDRSZ);
		else if (att->attlen == -2)
			r->counts.bytes += (int64) strlen(DatumGetCString(value));
		else
			r->counts.bytes += att->attlen;
	}
	if (r->counts.bytes > r->max_bytes)
	{
		r->counts.exceeded = true;
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
	r->counts.rows++;
	return true;
}

static void
receiver_noop(DestReceiver *self)
{
}

/* A receiver that fills stash, allocated in the stash's context: its counts outlive SPI's memory. */
DestReceiver *
result_receiver_create(Stash *stash, int64 max_rows, int64 max_bytes, bool as_json)
{
	StashReceiver *r = MemoryContextAllocZero(stash->cxt, sizeof(StashReceiver));

	r->pub.receiveSlot = receiver_receive;
	r->pub.rStartup = receiver_startup;
	r->pub.rShutdown = receiver_noop;
	r->pub.rDestroy = receiver_noop;
	r->pub.mydest = DestNone;
	r->stash = stash;
	r->max_rows = max_rows;
	r->max_bytes = max_bytes;
	r->as_json = as_json;
	return (DestReceiver *) r;
}

ResultCounts
result_receiver_counts(DestReceiver *receiver)
{
	return ((StashReceiver *) receiver)->counts;
}

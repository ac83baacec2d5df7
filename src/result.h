/*
 * src/result.h: the seam between running a guarded query and handing its
 * rows to the caller: kept results (result_stash.c), the receiver that fills
 * them as the executor produces rows (result_receiver.c), each row as its
 * row_to_json text (row_json.c); result_rows.c and result_typed.c are the
 * SQL-callable functions. Private to this library.
 */
#ifndef SQLCODER_RESULT_H
#define SQLCODER_RESULT_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "tcop/dest.h"
#include "utils/tuplestore.h"

/* One kept result, allocated in its own memory context: freeing it frees it all. */
typedef struct Stash
{
	int64		token;
	MemoryContext cxt;			/* child of TopTransactionContext */
	Tuplestorestate *store;
	TupleDesc	desc;			/* set by the receiver's startup */
} Stash;

/* result_stash.c: results waiting to be taken, at most MAX_WAITING_RESULTS of them. */
extern Stash *result_stash_create(void);
extern void result_stash_free(Stash *stash);
extern int	result_stash_waiting(void);
extern int64 result_stash_keep(Stash *stash);
extern Stash *result_take_stash(int64 token);
extern bool result_stash_read(Stash *stash, TupleTableSlot *slot);

/*
 * Each kept result may hold work_mem in memory until it is taken. The SQL
 * wrappers take theirs at once, so more than a few waiting means someone
 * calls the internals in a loop: refused, so memory stays bounded.
 */
#define MAX_WAITING_RESULTS 8

/* result_receiver.c: counts kept by the receiver, read once the query ended. */
typedef struct ResultCounts
{
	int64		rows;
	int64		bytes;
	bool		truncated;		/* max_rows was reached and more rows came */
	bool		exceeded;		/* max_bytes was passed: the rows are not to be used */
} ResultCounts;

extern DestReceiver *result_receiver_create(Stash *stash, int64 max_rows, int64 max_bytes, bool as_json);
extern ResultCounts result_receiver_counts(DestReceiver *receiver);

/* row_json.c: one row as row_to_json's text, measured before it is built. */
typedef struct RowJson RowJson;

/* For rows of desc; allocated in the current memory context, which must outlive the rows. */
extern RowJson *row_json_start(TupleDesc desc);

/* A lower bound of the row's JSON length from its datums as they are: nothing detoasted or copied. */
extern int64 row_json_lower_bound(RowJson *rj, TupleTableSlot *slot);

/* The exact length of the row's JSON text; its parts are kept, in the current context, for row_json_build. */
extern int64 row_json_measure(RowJson *rj, TupleTableSlot *slot);

/* The measured row as one json datum of exactly that length, in the current context. */
extern Datum row_json_build(RowJson *rj);

/* result_rows.c: set-returning functions answer only in materialize mode. */
extern void result_check_materialize(ReturnSetInfo *rsinfo, const char *name);

#endif							/* SQLCODER_RESULT_H */

/*
 * src/result_rows.h: declarations shared by the files that keep a query's
 * rows between the guard and the caller (result_stash.c, result_receiver.c,
 * result_rows.c, result_typed.c); private to this library.
 */
#ifndef SQLCODER_RESULT_ROWS_H
#define SQLCODER_RESULT_ROWS_H

#include "postgres.h"

#include "executor/tuptable.h"
#include "funcapi.h"
#include "nodes/pg_list.h"
#include "tcop/dest.h"
#include "utils/tuplestore.h"

#include "row_json.h"

/* One kept result, allocated in its own memory context: freeing it frees it all. */
typedef struct Stash
{
	int64		token;
	MemoryContext cxt;			/* child of TopTransactionContext */
	Tuplestorestate *store;
	TupleDesc	desc;
} Stash;

/*
 * Each kept result may hold work_mem in memory until it is taken. The SQL
 * wrappers take theirs at once, so more than a few waiting means someone
 * calls the internals in a loop: refused, so memory stays bounded.
 */
#define MAX_WAITING_RESULTS 8

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

/* result_stash.c */
extern List *result_stashes;
extern int64 result_next_token;
extern void result_stash_free(Stash *stash);
extern Stash *result_stash_create(void);
extern Stash *result_take_stash(int64 token);

/* result_receiver.c */
extern void result_receiver_startup(DestReceiver *self, int operation, TupleDesc typeinfo);
extern bool result_receiver_receive(TupleTableSlot *slot, DestReceiver *self);
extern void result_receiver_noop(DestReceiver *self);

/* result_rows.c */
extern void result_check_materialize(ReturnSetInfo *rsinfo, const char *name);

#endif							/* SQLCODER_RESULT_ROWS_H */

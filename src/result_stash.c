/*
 * src/result_stash.c: the kept results ("stashes") waiting to be taken: each in
 * its own memory context under TopTransactionContext, its tuplestore's
 * temporary file owned by the top transaction's resource owner, so a
 * subtransaction's rollback keeps it; found again by token, refused past
 * MAX_WAITING_RESULTS, and freed when the transaction ends if never taken.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "result.h"

/* Results not yet taken, in TopTransactionContext; reset at transaction end. */
static List *result_stashes = NIL;
static int64 result_next_token = 1;
static bool callback_registered = false;

/* The stash is gone afterwards: its struct lived in its own context. */
void
result_stash_free(Stash *stash)
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
			foreach(lc, result_stashes)
				result_stash_free((Stash *) lfirst(lc));
			result_stashes = NIL;
			break;
		default:
			/* abort: the resource owner closed the files, the memory is gone */
			result_stashes = NIL;
			break;
	}
}

Stash *
result_stash_create(void)
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

int
result_stash_waiting(void)
{
	return list_length(result_stashes);
}

/* Put a filled stash on the waiting list; returns the token that takes it. */
int64
result_stash_keep(Stash *stash)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

	stash->token = result_next_token++;
	result_stashes = lappend(result_stashes, stash);
	MemoryContextSwitchTo(old);
	return stash->token;
}

/*
 * The next kept row into slot, false at the end. A row read back from the
 * tuplestore's file is allocated in the stash's context; the slot frees it
 * at the next read.
 */
bool
result_stash_read(Stash *stash, TupleTableSlot *slot)
{
	MemoryContext old = MemoryContextSwitchTo(stash->cxt);
	bool		found = tuplestore_gettupleslot(stash->store, true, false, slot);

	MemoryContextSwitchTo(old);
	return found;
}

/* The rows kept under token, removed from the waiting list: the caller frees them (result_stash_free). */
Stash *
result_take_stash(int64 token)
{
	ListCell   *lc;

	foreach(lc, result_stashes)
	{
		Stash	   *candidate = (Stash *) lfirst(lc);

		if (candidate->token == token)
		{
			result_stashes = foreach_delete_current(result_stashes, lc);
			if (candidate->desc == NULL)
			{
				result_stash_free(candidate);
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

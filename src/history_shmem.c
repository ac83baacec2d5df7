/*
 * src/history_shmem.c: the history writer's counters, and the table that
 * folds identical refusals within a second into one row, shared by every
 * backend and worker; and sqlcoder._history_stats(), which reports them.
 *
 * Counters and the fold table live in a small struct allocated lazily in the
 * main shared memory segment's spare space (no shared_preload_libraries
 * needed); when that space is missing they fall back to per-backend counters
 * and no folding.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_auth_members.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "history.h"

PG_FUNCTION_INFO_V1(sqlcoder_history_stats);

static const char *const counter_names[C_COUNT] = {
	"calls", "written", "folded", "unconfirmed", "lost_no_worker", "lost_unsafe_role", "lost_failed",
	"written_at_exit", "purged", "written_in_caller_transaction", "rewritten_after_rollback"
};

HistoryShared *history_shared = NULL;
static bool shared_tried = false;
static uint64 local_counters[C_COUNT];

/* -- shared state ---------------------------------------------------------- */

/*
 * Find or make the shared struct. ShmemInitStruct after startup takes its
 * space from the segment's slack (about 100 kB that PostgreSQL keeps for
 * small allocations); if that fails the error is caught in a subtransaction
 * and the backend counts for itself.
 */
HistoryShared *
history_shared_state(void)
{
	MemoryContext oldcxt;
	ResourceOwner oldowner;

	if (shared_tried || !IsTransactionState())
		return history_shared;
	shared_tried = true;
	oldcxt = CurrentMemoryContext;
	oldowner = CurrentResourceOwner;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		bool		found;
		HistoryShared *s;

		LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
		s = ShmemInitStruct("sqlcoder history", sizeof(HistoryShared), &found);
		if (!found)
		{
			memset(s, 0, sizeof(HistoryShared));
			SpinLockInit(&s->mutex);
		}
		LWLockRelease(AddinShmemInitLock);
		ReleaseCurrentSubTransaction();
		history_shared = s;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		elog(LOG, "sqlcoder: history counters are per backend (no shared memory left: %s)", edata->message);
		FreeErrorData(edata);
		history_shared = NULL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return history_shared;
}

void
history_count(Counter c, int64 n)
{
	if (history_shared != NULL)
	{
		SpinLockAcquire(&history_shared->mutex);
		history_shared->counters[c] += n;
		SpinLockRelease(&history_shared->mutex);
	}
	else
		local_counters[c] += n;
}

/* Count a lost row and log why (the row's operation and role, never its text). */
void
history_lost(Counter c, const char *role, const char *reason)
{
	history_count(c, 1);
	if (history_shared != NULL)
	{
		SpinLockAcquire(&history_shared->mutex);
		strlcpy(history_shared->last_failure, reason, REASON_LEN);
		history_shared->last_failure_at = GetCurrentTimestamp();
		SpinLockRelease(&history_shared->mutex);
	}
	ereport(LOG,
			(errmsg("sqlcoder: a history row of role \"%s\" was not written: %s", role, reason)));
}

static uint64
fold_key(const char *key)
{
	return DatumGetUInt64(hash_any_extended((const unsigned char *) key, strlen(key), 0));
}

/* Fold into an open slot (true), or claim one for this row (*slot >= 0). */
bool
history_fold(Oid roleid, const char *key, int *slot)
{
	uint64		h = fold_key(key);
	TimestampTz now = GetCurrentTimestamp();
	int			free_slot = -1;
	bool		folded = false;

	*slot = -1;
	if (history_shared == NULL)
		return false;
	SpinLockAcquire(&history_shared->mutex);
	for (int i = 0; i < FOLD_SLOTS; i++)
	{
		FoldSlot   *f = &history_shared->fold[i];

		if (f->open && TimestampDifferenceExceeds(f->started, now, FOLD_STALE_MS))
			f->open = false;
		if (f->open && f->dbid == MyDatabaseId && f->roleid == roleid && f->key == h &&
			!TimestampDifferenceExceeds(f->started, now, FOLD_WINDOW_MS))
		{
			f->count++;
			folded = true;
			break;
		}
		if (!f->open && free_slot < 0)
			free_slot = i;
	}
	if (!folded && free_slot >= 0)
	{
		FoldSlot   *f = &history_shared->fold[free_slot];

		f->dbid = MyDatabaseId;
		f->roleid = roleid;
		f->key = h;
		f->started = now;
		f->count = 1;
		f->open = true;
		*slot = free_slot;
	}
	SpinLockRelease(&history_shared->mutex);
	return folded;
}

void
history_release_slot(int slot)
{
	if (slot < 0 || history_shared == NULL)
		return;
	SpinLockAcquire(&history_shared->mutex);
	history_shared->fold[slot].open = false;
	SpinLockRelease(&history_shared->mutex);
}

/* Whether this process should start a purge now (once a minute per server); claims it if so. */
bool
history_purge_due(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		due = false;

	if (history_shared == NULL)
		return random() % 100 == 0;
	SpinLockAcquire(&history_shared->mutex);
	if (TimestampDifferenceExceeds(history_shared->last_purge, now, PURGE_EVERY_MS))
	{
		history_shared->last_purge = now;
		due = true;
	}
	SpinLockRelease(&history_shared->mutex);
	return due;
}
/* sqlcoder._history_stats() RETURNS jsonb: the counters, for sqlcoder.status(). */
Datum
sqlcoder_history_stats(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	uint64		c[C_COUNT];
	char		failure[REASON_LEN] = "";
	TimestampTz failure_at = 0;

	history_shared_state();
	if (history_shared != NULL)
	{
		SpinLockAcquire(&history_shared->mutex);
		memcpy(c, history_shared->counters, sizeof(c));
		strlcpy(failure, history_shared->last_failure, REASON_LEN);
		failure_at = history_shared->last_failure_at;
		SpinLockRelease(&history_shared->mutex);
	}
	else
		memcpy(c, local_counters, sizeof(c));
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"scope\": \"%s\"", history_shared != NULL ? "server" : "backend");
	for (int i = 0; i < C_COUNT; i++)
		appendStringInfo(&buf, ", \"%s\": " UINT64_FORMAT, counter_names[i], c[i]);
	appendStringInfoString(&buf, ", \"last_failure\": ");
	if (failure[0])
	{
		escape_json(&buf, failure);
		appendStringInfoString(&buf, ", \"last_failure_at\": ");
		escape_json(&buf, timestamptz_to_str(failure_at));
	}
	else
		appendStringInfoString(&buf, "null, \"last_failure_at\": null");
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * src/history_queue.c: what backends and history writers share: counters, the
 * table that folds identical refusals within a second into one row, and for
 * each database one bounded ring of rows with the state of its one writer.
 *
 * The small struct lives in the main shared memory segment's spare space,
 * allocated on first use (no shared_preload_libraries needed); each ring is a
 * pinned dynamic shared memory segment of HISTORY_RING_BYTES, made on first
 * use and reused by the next database once empty. A backend copies its row
 * into the ring and wakes the writer; a full ring is waited on until the
 * caller's deadline, then the row is counted as lost. So however many callers
 * write, history takes at most one background worker per database with rows
 * queued (HISTORY_RINGS at most), and a caller waits at most its deadline.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_database.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "history.h"

#define HISTORY_RINGS		8
#define HISTORY_RING_BYTES	(4 * 1024 * 1024)
#define FOLD_SLOTS			32
#define FOLD_WINDOW_MS		1000
#define FOLD_STALE_MS		30000	/* a slot whose row was never written is reused after this */
#define FAILED_KEPT			16
#define PURGE_EVERY_MS		60000
#define LOG_EVERY_MS		10000	/* at most one "not written" line per this, with a count */
#define WRITER_START_STALE_MS 10000	/* a writer registered but never running: start another */

typedef enum WriterState
{
	WS_NONE, WS_STARTING, WS_RUNNING
} WriterState;

typedef struct FoldSlot
{
	Oid			dbid;
	Oid			roleid;
	uint64		key;
	TimestampTz started;
	int32		count;
	bool		open;
} FoldSlot;

/* One database's ring; positions count bytes since the ring was made (offset = pos % size). */
typedef struct RingQueue
{
	Oid			dbid;			/* InvalidOid: free */
	dsm_handle	handle;			/* 0 until made; then kept for the server's life */
	uint64		head;			/* where the next row goes */
	uint64		tail;			/* the next row the writer takes */
	uint64		next_seq;
	uint64		done_seq;		/* rows before it are written, taken for folding, or failed */
	uint64		failed[FAILED_KEPT];	/* the last failed seqs, +1 (0: none) */
	WriterState writer;
	int			writer_procno;
	TimestampTz writer_since;
	ConditionVariable done_cv;	/* done_seq moved */
	ConditionVariable room_cv;	/* tail moved */
} RingQueue;

typedef struct HistoryShared
{
	slock_t		mutex;			/* counters, fold table, log state, purge time */
	uint64		counters[HC_COUNT];
	TimestampTz last_purge;
	TimestampTz last_failure_at;
	char		last_failure[HISTORY_REASON_LEN];
	TimestampTz last_log_at;
	uint64		unlogged;		/* lost rows not yet in a log line */
	FoldSlot	fold[FOLD_SLOTS];
	int			tranche;
	LWLock		lock;			/* the rings */
	RingQueue	rings[HISTORY_RINGS];
} HistoryShared;

/* A row in a ring. size 0 marks the unused end of the ring before it wraps. */
typedef struct RingEntry
{
	uint32		size;			/* the whole entry, MAXALIGNed */
	uint32		payload_len;
	uint64		seq;
	Oid			roleid;
	NameData	rolename;
	int32		fold_slot;
	int32		write_timeout_ms;
	char		outcome[HISTORY_OUTCOME_LEN];
	double		latency_ms;
	char		payload[FLEXIBLE_ARRAY_MEMBER];
} RingEntry;

static const char *const counter_names[HC_COUNT] = {
	"calls", "written", "folded", "unconfirmed", "lost_queue_full", "lost_no_queue", "lost_unsafe_role",
	"lost_failed", "queued_at_exit", "purged", "writer_starts"
};

static HistoryShared *shared = NULL;
static bool shared_tried = false;
static uint64 local_counters[HC_COUNT];
static char *mapped[HISTORY_RINGS];	/* this backend's mapping of each ring */
static int	writer_ring = -1;	/* in a writer: its ring */

/* -- the shared struct ------------------------------------------------------ */

/*
 * Find or make the shared struct. ShmemInitStruct after startup takes its
 * space from the segment's slack (about 100 kB that PostgreSQL keeps for
 * small allocations); if that fails the error is caught in a subtransaction
 * and the backend counts for itself and queues nothing.
 */
static HistoryShared *
shared_state(void)
{
	MemoryContext oldcxt;
	ResourceOwner oldowner;

	if (shared_tried || !IsTransactionState())
		return shared;
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
		s = ShmemInitStruct("sqlcoder history v2", sizeof(HistoryShared), &found);
		if (!found)
		{
			memset(s, 0, sizeof(HistoryShared));
			SpinLockInit(&s->mutex);
			s->tranche = LWLockNewTrancheId();
			LWLockInitialize(&s->lock, s->tranche);
			for (int i = 0; i < HISTORY_RINGS; i++)
			{
				ConditionVariableInit(&s->rings[i].done_cv);
				ConditionVariableInit(&s->rings[i].room_cv);
			}
		}
		LWLockRelease(AddinShmemInitLock);
		LWLockRegisterTranche(s->tranche, "sqlcoder_history");
		ReleaseCurrentSubTransaction();
		shared = s;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		elog(LOG, "sqlcoder: history counters are per backend and no row is queued (no shared memory left: %s)",
			 edata->message);
		FreeErrorData(edata);
		shared = NULL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return shared;
}

bool
history_shared_ready(void)
{
	return shared_state() != NULL;
}

/* -- counters and the log --------------------------------------------------- */

void
history_count(HistoryCounter c, int64 n)
{
	if (shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		shared->counters[c] += n;
		SpinLockRelease(&shared->mutex);
	}
	else
		local_counters[c] += n;
}

/*
 * Count a lost row, keep its reason for status(), and log it: at most one line
 * per LOG_EVERY_MS for the whole server, saying how many went unlogged since,
 * so a caller losing rows on purpose cannot flood the log.
 */
void
history_lost(HistoryCounter c, const char *role, const char *reason)
{
	TimestampTz now = GetCurrentTimestamp();
	uint64		unlogged = 0;
	bool		log_now = true;

	history_count(c, 1);
	if (shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		strlcpy(shared->last_failure, reason, HISTORY_REASON_LEN);
		shared->last_failure_at = now;
		log_now = TimestampDifferenceExceeds(shared->last_log_at, now, LOG_EVERY_MS);
		if (log_now)
		{
			unlogged = shared->unlogged;
			shared->unlogged = 0;
			shared->last_log_at = now;
		}
		else
			shared->unlogged++;
		SpinLockRelease(&shared->mutex);
	}
	if (!log_now)
		return;
	if (unlogged > 0)
		ereport(LOG, (errmsg("sqlcoder: a history row of role \"%s\" was not written: %s", role ? role : "?", reason),
					  errdetail("%llu more rows were not written since the last such line; "
								"sqlcoder.status() counts each by reason.", (unsigned long long) unlogged)));
	else
		ereport(LOG, (errmsg("sqlcoder: a history row of role \"%s\" was not written: %s", role ? role : "?",
							 reason)));
}

/* The counters as a JSON object, for sqlcoder.status(). */
char *
history_stats_json(void)
{
	StringInfoData buf;
	uint64		c[HC_COUNT];
	char		failure[HISTORY_REASON_LEN] = "";
	TimestampTz failure_at = 0;
	int			writers = 0;
	uint64		queued = 0;

	shared_state();
	if (shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		memcpy(c, shared->counters, sizeof(c));
		strlcpy(failure, shared->last_failure, HISTORY_REASON_LEN);
		failure_at = shared->last_failure_at;
		SpinLockRelease(&shared->mutex);
		LWLockAcquire(&shared->lock, LW_SHARED);
		for (int i = 0; i < HISTORY_RINGS; i++)
		{
			writers += shared->rings[i].writer != WS_NONE;
			queued += shared->rings[i].head - shared->rings[i].tail;
		}
		LWLockRelease(&shared->lock);
	}
	else
		memcpy(c, local_counters, sizeof(c));
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"scope\": \"%s\"", shared != NULL ? "server" : "backend");
	for (int i = 0; i < HC_COUNT; i++)
		appendStringInfo(&buf, ", \"%s\": " UINT64_FORMAT, counter_names[i], c[i]);
	appendStringInfo(&buf, ", \"writers\": %d, \"queued_bytes\": " UINT64_FORMAT, writers, queued);
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
	return buf.data;
}

/* -- folding ---------------------------------------------------------------- */

static uint64
fold_hash(const char *key)
{
	return DatumGetUInt64(hash_any_extended((const unsigned char *) key, strlen(key), 0));
}

/* Fold into an open slot (true), or claim one for this row (*slot >= 0). */
bool
history_fold(Oid roleid, const char *key, int *slot)
{
	uint64		h = fold_hash(key);
	TimestampTz now = GetCurrentTimestamp();
	int			free_slot = -1;
	bool		folded = false;

	*slot = -1;
	if (shared_state() == NULL)
		return false;
	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < FOLD_SLOTS; i++)
	{
		FoldSlot   *f = &shared->fold[i];

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
		FoldSlot   *f = &shared->fold[free_slot];

		f->dbid = MyDatabaseId;
		f->roleid = roleid;
		f->key = h;
		f->started = now;
		f->count = 1;
		f->open = true;
		*slot = free_slot;
	}
	SpinLockRelease(&shared->mutex);
	return folded;
}

void
history_release_fold(int slot)
{
	if (slot < 0 || slot >= FOLD_SLOTS || shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	shared->fold[slot].open = false;
	SpinLockRelease(&shared->mutex);
}

/* How long until the slot's window closes (0: closed). */
int
history_fold_wait_ms(int slot)
{
	long		passed;

	if (slot < 0 || slot >= FOLD_SLOTS || shared == NULL)
		return 0;
	SpinLockAcquire(&shared->mutex);
	passed = (long) ((GetCurrentTimestamp() - shared->fold[slot].started) / 1000);
	SpinLockRelease(&shared->mutex);
	return passed >= FOLD_WINDOW_MS ? 0 : (int) (FOLD_WINDOW_MS - passed);
}

/* Close the slot and take its count. */
int32
history_take_fold(int slot)
{
	int32		count;

	if (slot < 0 || slot >= FOLD_SLOTS || shared == NULL)
		return 1;
	SpinLockAcquire(&shared->mutex);
	count = Max(shared->fold[slot].count, 1);
	shared->fold[slot].open = false;
	SpinLockRelease(&shared->mutex);
	return count;
}

/* Whether this process should purge now (once a minute per server); claims it if so. */
bool
history_purge_due(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		due = false;

	if (shared == NULL)
		return false;
	SpinLockAcquire(&shared->mutex);
	if (TimestampDifferenceExceeds(shared->last_purge, now, PURGE_EVERY_MS))
	{
		shared->last_purge = now;
		due = true;
	}
	SpinLockRelease(&shared->mutex);
	return due;
}

/* -- rings ------------------------------------------------------------------ */

/* This backend's mapping of ring i, made on first use and kept for the session. */
static char *
ring_data(int i)
{
	dsm_segment *seg;
	ResourceOwner oldowner;

	if (mapped[i] != NULL)
		return mapped[i];
	oldowner = CurrentResourceOwner;
	CurrentResourceOwner = NULL;	/* a session-lifetime mapping */
	seg = dsm_find_mapping(shared->rings[i].handle);
	if (seg == NULL)
		seg = dsm_attach(shared->rings[i].handle);
	CurrentResourceOwner = oldowner;
	if (seg == NULL)
		return NULL;
	dsm_pin_mapping(seg);
	mapped[i] = dsm_segment_address(seg);
	return mapped[i];
}

static bool
database_exists(Oid dbid)
{
	return IsTransactionState() ? SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dbid)) : true;
}

/*
 * The ring of this database, claiming a free or idle one (empty, no writer),
 * or one left by a dropped database. Caller holds the lock exclusively.
 */
static int
ring_for_database(void)
{
	int			idle = -1;

	for (int i = 0; i < HISTORY_RINGS; i++)
		if (shared->rings[i].dbid == MyDatabaseId)
			return i;
	for (int i = 0; i < HISTORY_RINGS && idle < 0; i++)
	{
		RingQueue  *q = &shared->rings[i];

		if (!OidIsValid(q->dbid) || (q->head == q->tail && q->writer == WS_NONE))
			idle = i;
	}
	for (int i = 0; i < HISTORY_RINGS && idle < 0; i++)
	{
		RingQueue  *q = &shared->rings[i];

		if (q->writer == WS_NONE && !database_exists(q->dbid))
		{
			/* Its database is gone, and with it every row still queued for it. */
			history_count(HC_FAILED, (int64) (q->next_seq - q->done_seq));
			idle = i;
		}
	}
	if (idle < 0)
		return -1;
	shared->rings[idle].dbid = MyDatabaseId;
	shared->rings[idle].tail = shared->rings[idle].head;
	shared->rings[idle].done_seq = shared->rings[idle].next_seq;
	memset(shared->rings[idle].failed, 0, sizeof(shared->rings[idle].failed));
	if (shared->rings[idle].handle == 0)
	{
		dsm_segment *seg;
		ResourceOwner oldowner = CurrentResourceOwner;

		CurrentResourceOwner = NULL;
		seg = dsm_create(HISTORY_RING_BYTES, DSM_CREATE_NULL_IF_MAXSEGMENTS);
		CurrentResourceOwner = oldowner;
		if (seg == NULL)
		{
			shared->rings[idle].dbid = InvalidOid;
			return -1;
		}
		dsm_pin_segment(seg);	/* kept for the server's life, reused by later databases */
		dsm_pin_mapping(seg);
		shared->rings[idle].handle = dsm_segment_handle(seg);
		mapped[idle] = dsm_segment_address(seg);
	}
	return idle;
}

/* Copy one row in at head, if it fits; the lock is held exclusively. */
static bool
ring_put(RingQueue *q, char *data, const HistoryRow *row, uint32 size, uint64 seq)
{
	uint64		off = q->head % HISTORY_RING_BYTES;
	uint64		waste = (off + size > HISTORY_RING_BYTES) ? HISTORY_RING_BYTES - off : 0;
	RingEntry  *e;

	if (q->head - q->tail + waste + size > HISTORY_RING_BYTES)
		return false;
	if (waste > 0)
	{
		((RingEntry *) (data + off))->size = 0;
		q->head += waste;
		off = 0;
	}
	e = (RingEntry *) (data + off);
	e->size = size;
	e->payload_len = row->payload_len;
	e->seq = seq;
	e->roleid = row->roleid;
	e->rolename = row->rolename;
	e->fold_slot = row->fold_slot;
	e->write_timeout_ms = row->write_timeout_ms;
	memcpy(e->outcome, row->outcome, HISTORY_OUTCOME_LEN);
	e->latency_ms = row->latency_ms;
	memcpy(e->payload, row->payload, row->payload_len);
	e->payload[row->payload_len] = '\0';
	q->head += size;
	return true;
}

/*
 * Queue one row for this database's writer, waiting for room until deadline
 * (a deadline already passed: no wait, as at exit). The wait sleeps on a
 * condition variable, which checks for interrupts: a cancelled caller leaves
 * with an error and its row is simply not queued.
 */
HistoryEnqueue
history_enqueue(const HistoryRow *row, TimestampTz deadline, uint64 *seq)
{
	uint32		size = MAXALIGN(offsetof(RingEntry, payload) + row->payload_len + 1);
	bool		sleeping = false;
	HistoryEnqueue result;

	if (shared_state() == NULL)
		return HQ_NO_MEMORY;
	Assert(size <= HISTORY_RING_BYTES);
	for (;;)
	{
		int			i;
		char	   *data;
		long		left;
		RingQueue  *q;

		LWLockAcquire(&shared->lock, LW_EXCLUSIVE);
		i = ring_for_database();
		if (i < 0)
		{
			LWLockRelease(&shared->lock);
			result = HQ_NO_QUEUE;
			break;
		}
		q = &shared->rings[i];
		data = ring_data(i);
		if (data == NULL)
		{
			LWLockRelease(&shared->lock);
			result = HQ_NO_MEMORY;
			break;
		}
		if (ring_put(q, data, row, size, q->next_seq))
		{
			*seq = q->next_seq++;
			LWLockRelease(&shared->lock);
			result = HQ_QUEUED;
			break;
		}
		LWLockRelease(&shared->lock);
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left <= 0)
		{
			result = HQ_FULL;
			break;
		}
		if (!sleeping)
		{
			ConditionVariablePrepareToSleep(&q->room_cv);
			sleeping = true;
		}
		else
			(void) ConditionVariableTimedSleep(&q->room_cv, Min(left, 100), PG_WAIT_EXTENSION);
	}
	if (sleeping)
		ConditionVariableCancelSleep();
	return result;
}

static HistoryOutcome
outcome_of(RingQueue *q, uint64 seq)
{
	if (q->dbid != MyDatabaseId || seq >= q->done_seq)
		return HO_PENDING;
	for (int k = 0; k < FAILED_KEPT; k++)
		if (q->failed[k] == seq + 1)
			return HO_FAILED;
	return HO_WRITTEN;
}

/*
 * Wait until the writer is done with row seq, or deadline. The sleep on the
 * condition variable checks for interrupts (a cancel ends the wait with an
 * error; the row stays queued and is written).
 */
HistoryOutcome
history_wait(uint64 seq, TimestampTz deadline)
{
	int			i = -1;
	HistoryOutcome result = HO_PENDING;

	if (shared == NULL)
		return HO_PENDING;
	LWLockAcquire(&shared->lock, LW_SHARED);
	for (int k = 0; k < HISTORY_RINGS; k++)
		if (shared->rings[k].dbid == MyDatabaseId)
			i = k;
	LWLockRelease(&shared->lock);
	if (i < 0)
		return HO_PENDING;
	ConditionVariablePrepareToSleep(&shared->rings[i].done_cv);
	for (;;)
	{
		long		left;

		LWLockAcquire(&shared->lock, LW_SHARED);
		result = outcome_of(&shared->rings[i], seq);
		LWLockRelease(&shared->lock);
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (result != HO_PENDING || left <= 0)
			break;
		(void) ConditionVariableTimedSleep(&shared->rings[i].done_cv, left, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	return result;
}

/*
 * Make sure this database's ring has a writer: wake the running one, or
 * register one when there is none (or the last registration never ran). A
 * registration that fails (every worker slot taken, by parallel query for
 * instance) leaves the rows queued: the next call tries again.
 */
void
history_ensure_writer(Oid writer)
{
	int			i = -1;
	int			procno = -1;
	bool		start = false;

	if (shared == NULL)
		return;
	LWLockAcquire(&shared->lock, LW_EXCLUSIVE);
	for (int k = 0; k < HISTORY_RINGS; k++)
		if (shared->rings[k].dbid == MyDatabaseId)
			i = k;
	if (i >= 0)
	{
		RingQueue  *q = &shared->rings[i];

		if (q->writer == WS_RUNNING)
			procno = q->writer_procno;
		else if (q->writer == WS_NONE ||
				 TimestampDifferenceExceeds(q->writer_since, GetCurrentTimestamp(), WRITER_START_STALE_MS))
		{
			q->writer = WS_STARTING;
			q->writer_since = GetCurrentTimestamp();
			start = true;
		}
	}
	LWLockRelease(&shared->lock);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
	if (start)
	{
		if (history_start_writer(MyDatabaseId, writer))
			history_count(HC_WRITER_STARTS, 1);
		else
		{
			LWLockAcquire(&shared->lock, LW_EXCLUSIVE);
			if (shared->rings[i].writer == WS_STARTING)
				shared->rings[i].writer = WS_NONE;
			LWLockRelease(&shared->lock);
		}
	}
}

/* -- the writer's side ------------------------------------------------------ */

static void
writer_gone(int code, Datum arg)
{
	RingQueue  *q;

	if (shared == NULL || writer_ring < 0)
		return;
	q = &shared->rings[writer_ring];
	LWLockAcquire(&shared->lock, LW_EXCLUSIVE);
	if (q->writer_procno == MyProc->pgprocno)
	{
		q->writer = WS_NONE;
		q->writer_procno = -1;
	}
	LWLockRelease(&shared->lock);
	ConditionVariableBroadcast(&q->done_cv);
}

/* Become dbid's writer; false when its ring is gone or another writer runs. Call inside a transaction. */
bool
history_attach_as_writer(Oid dbid)
{
	bool		ok = false;

	if (shared_state() == NULL)
		return false;
	LWLockAcquire(&shared->lock, LW_EXCLUSIVE);
	for (int k = 0; k < HISTORY_RINGS; k++)
	{
		RingQueue  *q = &shared->rings[k];

		if (q->dbid == dbid && q->writer != WS_RUNNING && q->handle != 0)
		{
			q->writer = WS_RUNNING;
			q->writer_procno = MyProc->pgprocno;
			q->writer_since = GetCurrentTimestamp();
			writer_ring = k;
			ok = ring_data(k) != NULL;
			break;
		}
	}
	if (writer_ring >= 0 && !ok)
		shared->rings[writer_ring].writer = WS_NONE;
	LWLockRelease(&shared->lock);
	if (ok)
		on_shmem_exit(writer_gone, (Datum) 0);
	else
		writer_ring = -1;
	return ok;
}

/* Take the oldest row (copied into CurrentMemoryContext); false when the ring is empty. */
bool
history_dequeue(HistoryRow *row, uint64 *seq)
{
	RingQueue  *q = &shared->rings[writer_ring];
	char	   *data = mapped[writer_ring];
	bool		found = false;

	LWLockAcquire(&shared->lock, LW_EXCLUSIVE);
	while (q->tail < q->head)
	{
		uint64		off = q->tail % HISTORY_RING_BYTES;
		RingEntry  *e = (RingEntry *) (data + off);
		char	   *payload;

		if (e->size == 0)
		{
			q->tail += HISTORY_RING_BYTES - off;
			continue;
		}
		payload = palloc(e->payload_len + 1);
		memcpy(payload, e->payload, e->payload_len + 1);
		row->roleid = e->roleid;
		row->rolename = e->rolename;
		row->fold_slot = e->fold_slot;
		row->write_timeout_ms = e->write_timeout_ms;
		memcpy(row->outcome, e->outcome, HISTORY_OUTCOME_LEN);
		row->latency_ms = e->latency_ms;
		row->payload_len = e->payload_len;
		row->payload = payload;
		*seq = e->seq;
		q->tail += e->size;
		found = true;
		break;
	}
	LWLockRelease(&shared->lock);
	if (found)
		ConditionVariableBroadcast(&q->room_cv);
	return found;
}

/* The writer is done with row seq (rows are finished in the order they were queued). */
void
history_finish(uint64 seq, bool ok)
{
	RingQueue  *q = &shared->rings[writer_ring];

	LWLockAcquire(&shared->lock, LW_EXCLUSIVE);
	if (!ok)
		q->failed[seq % FAILED_KEPT] = seq + 1;
	if (seq + 1 > q->done_seq)
		q->done_seq = seq + 1;
	LWLockRelease(&shared->lock);
	ConditionVariableBroadcast(&q->done_cv);
}

/* An idle writer leaves when its ring is empty: decided under the lock, so no row is left behind. */
bool
history_writer_may_exit(void)
{
	RingQueue  *q = &shared->rings[writer_ring];
	bool		empty;

	LWLockAcquire(&shared->lock, LW_EXCLUSIVE);
	empty = q->head == q->tail;
	if (empty)
	{
		q->writer = WS_NONE;
		q->writer_procno = -1;
	}
	LWLockRelease(&shared->lock);
	if (empty)
		writer_ring = -1;
	return empty;
}

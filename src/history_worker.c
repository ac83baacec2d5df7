/*
 * src/history_worker.c: sqlcoder.history rows written by a background worker
 * that runs as a role allowed nothing but to insert them.
 *
 * Why a worker: a row must survive the caller's error or rollback, so it is
 * written in a transaction of its own, and until 0.3.0 that meant a loopback
 * libpq connection as a superuser, steered by the current database's name (a
 * database named 'dbname=evil host=...' sent it elsewhere). Here nothing goes
 * by name or connection string: the backend puts the row (a JSON text) into a
 * dynamic shared memory segment and registers a dynamic background worker
 * that connects by OID to the caller's database (MyDatabaseId) as the
 * dedicated role sqlcoder_history_writer (no authentication, no
 * max_connections slot), pins its own settings and inserts the row with SPI.
 * The caller waits for the worker at most history_timeout_ms; the segment is
 * pinned, so a row the caller stopped waiting for is still written. A row
 * that cannot be written (no worker slot, an unsafe writer role, an error in
 * the worker) is counted and logged with its reason.
 *
 * Counters and the table that folds identical refusals within a second into
 * one row live in a small struct allocated lazily in the main shared memory
 * segment's spare space (no shared_preload_libraries needed); when that space
 * is missing they fall back to per-backend counters and no folding.
 *
 * A call that is still running when its backend exits (terminated, or the
 * client went away) is written from a before_shmem_exit callback, with the
 * outcome 'terminated' or 'abandoned'.
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

PGDLLEXPORT void sqlcoder_history_main(Datum arg);

PG_FUNCTION_INFO_V1(sqlcoder_history_begin);
PG_FUNCTION_INFO_V1(sqlcoder_history_write);
PG_FUNCTION_INFO_V1(sqlcoder_history_stats);

#define WRITER_ROLE		"sqlcoder_history_writer"
#define FOLD_SLOTS		32
#define FOLD_WINDOW_MS	1000
#define FOLD_STALE_MS	30000	/* a slot whose worker died is reused after this */
#define PURGE_EVERY_MS	60000
#define PURGE_MAX_BATCHES 10
#define REASON_LEN		200
#define MAX_PAYLOAD_BYTES (4 * 1024 * 1024)

/* Counters, in shared memory (or per backend as a fallback). */
typedef enum
{
	C_CALLS,					/* rows asked to be written */
	C_WRITTEN,					/* rows committed by a worker */
	C_FOLDED,					/* calls folded into another row's repeat_count */
	C_UNCONFIRMED,				/* the caller stopped waiting after history_timeout_ms */
	C_NO_WORKER,				/* no background worker slot within the timeout */
	C_UNSAFE_ROLE,				/* the writer role is missing or has more than it should */
	C_FAILED,					/* the worker could not write it (lock, disk, ...) */
	C_AT_EXIT,					/* written for a call its backend left (terminated, abandoned) */
	C_PURGED,					/* rows removed by retention */
	C_IN_CALLER_XACT,			/* rows written in the caller's committed transaction */
	C_AT_ABORT,					/* rows handed to a worker because the caller's transaction rolled back */
	C_COUNT
} Counter;

static const char *const counter_names[C_COUNT] = {
	"calls", "written", "folded", "unconfirmed", "lost_no_worker", "lost_unsafe_role", "lost_failed",
	"written_at_exit", "purged", "written_in_caller_transaction", "rewritten_after_rollback"
};

typedef struct FoldSlot
{
	Oid			dbid;
	Oid			roleid;
	uint64		key;
	TimestampTz started;
	int32		count;
	bool		open;
} FoldSlot;

typedef struct HistoryShared
{
	slock_t		mutex;
	uint64		counters[C_COUNT];
	TimestampTz last_purge;
	TimestampTz last_failure_at;
	char		last_failure[REASON_LEN];
	FoldSlot	fold[FOLD_SLOTS];
} HistoryShared;

/* What the backend hands the worker, in a DSM segment. */
typedef enum
{
	JOB_PENDING, JOB_COPIED, JOB_WRITTEN, JOB_FAILED
} JobState;

typedef struct HistoryJob
{
	pg_atomic_uint32 state;
	Oid			roleid;			/* the caller's current_user, found here, never passed in */
	NameData	rolename;
	int32		fold_slot;		/* -1: not folded */
	int32		write_timeout_ms;
	int32		notify_procno;	/* the waiting backend's latch; -1 none */
	bool		purge_only;		/* no row: only delete rows past retention */
	char		outcome[32];	/* overrides the payload's outcome when set */
	double		latency_ms;		/* overrides the payload's latency when >= 0 */
	char		reason[REASON_LEN];
	Size		payload_len;
	char		payload[FLEXIBLE_ARRAY_MEMBER];
} HistoryJob;

/* bgw_extra: which database, as which role. */
typedef struct WorkerArgs
{
	Oid			dbid;
	Oid			writer;
} WorkerArgs;

static HistoryShared *shared = NULL;
static bool shared_tried = false;
static uint64 local_counters[C_COUNT];

/* The call in progress, written at exit if the backend leaves during it. */
static char *pending_payload = NULL;
static Oid	pending_roleid = InvalidOid;
static Oid	pending_writer = InvalidOid;
static NameData pending_rolename;
static TimestampTz pending_started = 0;
static int	pending_timeout_ms = 5000;
static bool exit_hook_registered = false;

/* -- shared state ---------------------------------------------------------- */

/*
 * Find or make the shared struct. ShmemInitStruct after startup takes its
 * space from the segment's slack (about 100 kB that PostgreSQL keeps for
 * small allocations); if that fails the error is caught in a subtransaction
 * and the backend counts for itself.
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
		s = ShmemInitStruct("sqlcoder history", sizeof(HistoryShared), &found);
		if (!found)
		{
			memset(s, 0, sizeof(HistoryShared));
			SpinLockInit(&s->mutex);
		}
		LWLockRelease(AddinShmemInitLock);
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
		elog(LOG, "sqlcoder: history counters are per backend (no shared memory left: %s)", edata->message);
		FreeErrorData(edata);
		shared = NULL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return shared;
}

static void
count(Counter c, int64 n)
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

/* Count a lost row and log why (the row's operation and role, never its text). */
static void
lost(Counter c, const char *role, const char *reason)
{
	count(c, 1);
	if (shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		strlcpy(shared->last_failure, reason, REASON_LEN);
		shared->last_failure_at = GetCurrentTimestamp();
		SpinLockRelease(&shared->mutex);
	}
	ereport(LOG,
			(errmsg("sqlcoder: a history row of role \"%s\" was not written: %s", role, reason)));
}

/* -- the writer role -------------------------------------------------------- */

/*
 * The writer role's OID, or InvalidOid (with *why) when it is missing or has
 * more than INSERT on the history table could need: an attribute, a password,
 * a member or a membership. Checked at every write, so a role created or
 * changed by someone else before or after CREATE EXTENSION is never used.
 */
static Oid
writer_role(const char **why)
{
	HeapTuple	tup;
	Form_pg_authid form;
	Oid			oid;
	bool		isnull;
	CatCList   *members;
	CatCList   *memberships;
	bool		bad;

	tup = SearchSysCache1(AUTHNAME, CStringGetDatum(WRITER_ROLE));
	if (!HeapTupleIsValid(tup))
	{
		*why = "role " WRITER_ROLE " does not exist";
		return InvalidOid;
	}
	form = (Form_pg_authid) GETSTRUCT(tup);
	oid = form->oid;
	(void) SysCacheGetAttr(AUTHNAME, tup, Anum_pg_authid_rolpassword, &isnull);
	bad = form->rolsuper || form->rolcreaterole || form->rolcreatedb ||
		form->rolreplication || form->rolbypassrls || !isnull;
	ReleaseSysCache(tup);
	if (bad)
	{
		*why = "role " WRITER_ROLE " has an attribute or a password it must not have";
		return InvalidOid;
	}
	members = SearchSysCacheList1(AUTHMEMROLEMEM, ObjectIdGetDatum(oid));
	memberships = SearchSysCacheList1(AUTHMEMMEMROLE, ObjectIdGetDatum(oid));
	bad = members->n_members > 0 || memberships->n_members > 0;
	ReleaseSysCacheList(members);
	ReleaseSysCacheList(memberships);
	if (bad)
	{
		*why = "role " WRITER_ROLE " has members or is a member of another role";
		return InvalidOid;
	}
	return oid;
}

/* -- the backend side ------------------------------------------------------- */

/* $1 the row (JSON), $2 the role, $3 an outcome and $4 a latency that override the row's, $5 repeat_count. */
static const char *const insert_sql =
"INSERT INTO sqlcoder.history (role, operation, question, sql, model, model_ms, query_ms, latency_ms, "
"row_count, truncated, outcome, error_sqlstate, error, repeat_count, attempts) "
"SELECT $2, r.operation, r.question, r.sql, r.model, r.model_ms, r.query_ms, COALESCE($4, r.latency_ms), "
"r.row_count, r.truncated, COALESCE($3, r.outcome, 'error'), r.error_sqlstate, r.error, $5, r.attempts "
"FROM pg_catalog.jsonb_to_record($1::pg_catalog.jsonb) AS r(operation text, question text, sql text, "
"model text, model_ms float8, query_ms float8, latency_ms float8, row_count int8, truncated bool, "
"outcome text, error_sqlstate text, error text, attempts pg_catalog.jsonb)";

static uint64
fold_key(const char *key)
{
	return DatumGetUInt64(hash_any_extended((const unsigned char *) key, strlen(key), 0));
}

/* Fold into an open slot (true), or claim one for this row (*slot >= 0). */
static bool
fold(Oid roleid, const char *key, int *slot)
{
	uint64		h = fold_key(key);
	TimestampTz now = GetCurrentTimestamp();
	int			free_slot = -1;
	bool		folded = false;

	*slot = -1;
	if (shared == NULL)
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

static void
release_slot(int slot)
{
	if (slot < 0 || shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	shared->fold[slot].open = false;
	SpinLockRelease(&shared->mutex);
}

/* Whether this process should start a purge now (once a minute per server); claims it if so. */
static bool
purge_due(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		due = false;

	if (shared == NULL)
		return random() % 100 == 0;
	SpinLockAcquire(&shared->mutex);
	if (TimestampDifferenceExceeds(shared->last_purge, now, PURGE_EVERY_MS))
	{
		shared->last_purge = now;
		due = true;
	}
	SpinLockRelease(&shared->mutex);
	return due;
}

static dsm_segment *
make_job(const char *payload, Oid roleid, const char *rolename, int fold_slot, int write_timeout_ms, bool notify)
{
	Size		len = strlen(payload);
	dsm_segment *seg = dsm_create(offsetof(HistoryJob, payload) + len + 1, DSM_CREATE_NULL_IF_MAXSEGMENTS);
	HistoryJob *job;

	if (seg == NULL)
		return NULL;
	job = dsm_segment_address(seg);
	memset(job, 0, offsetof(HistoryJob, payload));
	pg_atomic_init_u32(&job->state, JOB_PENDING);
	job->roleid = roleid;
	namestrcpy(&job->rolename, rolename);
	job->fold_slot = fold_slot;
	job->write_timeout_ms = write_timeout_ms;
	job->notify_procno = notify ? MyProc->pgprocno : -1;
	job->latency_ms = -1;
	job->payload_len = len;
	memcpy(job->payload, payload, len + 1);
	return seg;
}

static bool
start_worker(dsm_segment *seg, Oid writer, bool notify, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;
	WorkerArgs	args = {MyDatabaseId, writer};

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "sqlcoder_pg");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "sqlcoder_history_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "sqlcoder history writer");
	snprintf(worker.bgw_type, BGW_MAXLEN, "sqlcoder history writer");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = notify ? MyProcPid : 0;
	memcpy(worker.bgw_extra, &args, sizeof(args));
	return RegisterDynamicBackgroundWorker(&worker, handle);
}


/*
 * Rows written in the caller's transaction (the fast path, for calls that
 * succeeded): if that transaction or the subtransaction holding them rolls
 * back, they are handed to a worker then.
 */
typedef struct XactRow
{
	struct XactRow *next;
	SubTransactionId subid;
	Oid			roleid;
	Oid			writer;
	NameData	rolename;
	int			write_timeout_ms;
	char		payload[FLEXIBLE_ARRAY_MEMBER];
} XactRow;

static XactRow *xact_rows = NULL;
static bool xact_callbacks_registered = false;

static void
hand_over_without_waiting(const char *payload, Oid roleid, const char *rolename, Oid writer, int write_timeout_ms,
						  Counter on_success)
{
	ResourceOwner oldowner = CurrentResourceOwner;
	MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	dsm_segment *seg;
	BackgroundWorkerHandle *handle;

	/* Session-lifetime mapping: this may run while a transaction is being aborted. */
	CurrentResourceOwner = NULL;
	seg = make_job(payload, roleid, rolename, -1, write_timeout_ms, false);
	if (seg == NULL)
		lost(C_NO_WORKER, rolename, "no dynamic shared memory segment left");
	else
	{
		dsm_pin_segment(seg);
		if (start_worker(seg, writer, false, &handle))
			count(on_success, 1);
		else
		{
			dsm_unpin_segment(dsm_segment_handle(seg));
			lost(C_NO_WORKER, rolename, "no background worker slot for a row whose transaction rolled back");
		}
		dsm_detach(seg);
	}
	CurrentResourceOwner = oldowner;
	MemoryContextSwitchTo(oldcxt);
}

static void
release_rows(bool (*match) (XactRow *, SubTransactionId), SubTransactionId subid, bool rewrite)
{
	XactRow   **link = &xact_rows;

	while (*link != NULL)
	{
		XactRow    *row = *link;

		if (match(row, subid))
		{
			*link = row->next;
			if (rewrite)
				hand_over_without_waiting(row->payload, row->roleid, NameStr(row->rolename), row->writer,
										  row->write_timeout_ms, C_AT_ABORT);
			else
				count(C_IN_CALLER_XACT, 1);
			pfree(row);
		}
		else
			link = &row->next;
	}
}

static bool
any_row(XactRow *row, SubTransactionId subid)
{
	return true;
}

static bool
row_of(XactRow *row, SubTransactionId subid)
{
	return row->subid == subid;
}

static void
on_xact(XactEvent event, void *arg)
{
	if (xact_rows == NULL)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			release_rows(any_row, InvalidSubTransactionId, false);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			release_rows(any_row, InvalidSubTransactionId, true);
			break;
		default:
			break;
	}
}

static void
on_subxact(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		release_rows(row_of, mySubid, true);
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (XactRow *row = xact_rows; row != NULL; row = row->next)
			if (row->subid == mySubid)
				row->subid = parentSubid;
	}
}

/*
 * Insert the row in the caller's transaction as the writer role, in a
 * subtransaction under lock_timeout = timeout_ms, in a security-restricted
 * operation (as PostgreSQL runs index functions as a table's owner). False
 * when it cannot (read-only transaction, a lock, any error): then a worker.
 */
static bool
write_in_transaction(const char *payload, Oid roleid, const char *role, Oid writer, int timeout_ms,
					 int write_timeout_ms)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = false;
	Oid			save_uid;
	int			save_sec;

	if (XactReadOnly || RecoveryInProgress() || !IsTransactionState())
		return false;
	if (!xact_callbacks_registered)
	{
		RegisterXactCallback(on_xact, NULL);
		RegisterSubXactCallback(on_subxact, NULL);
		xact_callbacks_registered = true;
	}
	GetUserIdAndSecContext(&save_uid, &save_sec);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		Oid			types[5] = {TEXTOID, NAMEOID, TEXTOID, FLOAT8OID, INT4OID};
		Datum		values[5];
		char		nulls[5] = {' ', ' ', 'n', 'n', ' '};
		NameData	name;
		char		ms[32];
		int			nest;

		namestrcpy(&name, role);
		values[0] = CStringGetTextDatum(payload);
		values[1] = NameGetDatum(&name);
		values[4] = Int32GetDatum(1);
		SetUserIdAndSecContext(writer, save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
		nest = NewGUCNestLevel();
		snprintf(ms, sizeof(ms), "%d", timeout_ms);
		(void) set_config_option("lock_timeout", ms, PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
		(void) set_config_option("row_security", "on", PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		SPI_connect();
		if (SPI_execute_with_args(insert_sql, 5, types, values, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "the history insert did not insert");
		SPI_finish();
		AtEOXact_GUC(true, nest);
		SetUserIdAndSecContext(save_uid, save_sec);
		ReleaseCurrentSubTransaction();
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();	/* restores the user id and the settings */
		ereport(DEBUG1, (errmsg("sqlcoder: history row not written in the caller's transaction: %s",
								edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	if (ok)
	{
		Size		len = strlen(payload);
		XactRow    *row = MemoryContextAlloc(TopMemoryContext, offsetof(XactRow, payload) + len + 1);

		row->subid = GetCurrentSubTransactionId();
		row->roleid = roleid;
		row->writer = writer;
		namestrcpy(&row->rolename, role);
		row->write_timeout_ms = write_timeout_ms;
		memcpy(row->payload, payload, len + 1);
		row->next = xact_rows;
		xact_rows = row;
	}
	return ok;
}

/* A worker that only purges; nothing waits for it. */
static void
start_purge(Oid writer, int write_timeout_ms)
{
	dsm_segment *seg = make_job("{}", InvalidOid, "-", -1, write_timeout_ms, false);
	BackgroundWorkerHandle *handle;

	if (seg == NULL)
		return;
	((HistoryJob *) dsm_segment_address(seg))->purge_only = true;
	dsm_pin_segment(seg);
	if (!start_worker(seg, writer, false, &handle))
		dsm_unpin_segment(dsm_segment_handle(seg));
	dsm_detach(seg);
}

/*
 * Hand one row to a worker and wait for it at most timeout_ms. Returns what
 * happened: "written", "folded", "unconfirmed" (still being written when the
 * wait ended), or "lost: <reason>".
 */
static const char *
write_row(const char *payload, const char *fold_on, bool in_transaction, int timeout_ms, int write_timeout_ms)
{
	Oid			roleid = GetUserId();
	const char *why = NULL;
	Oid			writer;
	int			slot = -1;
	dsm_segment *seg;
	HistoryJob *job;
	BackgroundWorkerHandle *handle = NULL;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	const char *role = GetUserNameFromId(roleid, true);
	const char *result;
	uint32		state;

	shared_state();
	count(C_CALLS, 1);
	if (RecoveryInProgress())
	{
		/* A hot standby cannot write: counted, and logged once per backend rather than per call. */
		static bool logged = false;

		count(C_FAILED, 1);
		if (!logged)
			ereport(LOG, (errmsg("sqlcoder: history rows are not written on a standby (counted as lost_failed)")));
		logged = true;
		return "lost: the server is a standby";
	}
	if (fold_on != NULL && fold(roleid, fold_on, &slot))
	{
		count(C_FOLDED, 1);
		return "folded";
	}
	writer = writer_role(&why);
	if (!OidIsValid(writer))
	{
		release_slot(slot);
		lost(C_UNSAFE_ROLE, role, why);
		return psprintf("lost: %s", why);
	}
	/* Half the wait for a lock in the caller's transaction, the rest for a worker. */
	if (in_transaction && slot < 0 && write_in_transaction(payload, roleid, role ? role : "?", writer,
														   Max(timeout_ms / 2, 1), write_timeout_ms))
	{
		/* Rows written this way start no worker: start one for retention now and then. */
		if (purge_due())
			start_purge(writer, write_timeout_ms);
		return "written in the caller's transaction";
	}
	seg = make_job(payload, roleid, role ? role : "?", slot, write_timeout_ms, true);
	if (seg == NULL)
	{
		release_slot(slot);
		lost(C_NO_WORKER, role, "no dynamic shared memory segment left");
		return "lost: no dynamic shared memory segment left";
	}
	job = dsm_segment_address(seg);
	/* Pinned: the row outlives this backend's wait, and this backend. */
	dsm_pin_segment(seg);
	/* No free worker slot: try again until the deadline (others finish in milliseconds). */
	while (!start_worker(seg, writer, true, &handle))
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);

		if (left <= 0)
		{
			dsm_unpin_segment(dsm_segment_handle(seg));
			dsm_detach(seg);
			release_slot(slot);
			lost(C_NO_WORKER, role, "no background worker slot free within history_timeout_ms "
				 "(raise max_worker_processes)");
			return "lost: no background worker slot";
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, Min(left, 5),
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	/* A folded row is written when its window closes: wait only for the hand-over. */
	for (;;)
	{
		pid_t		pid;
		BgwHandleStatus st;
		long		left;

		state = pg_atomic_read_u32(&job->state);
		if (state >= JOB_WRITTEN || (slot >= 0 && state >= JOB_COPIED))
			break;
		st = GetBackgroundWorkerPid(handle, &pid);
		if (st == BGWH_STOPPED || st == BGWH_POSTMASTER_DIED)
		{
			state = pg_atomic_read_u32(&job->state);
			if (state == JOB_PENDING)
			{
				/* It never took the row (it failed to start): unpin it ourselves. */
				dsm_unpin_segment(dsm_segment_handle(seg));
				release_slot(slot);
				lost(C_FAILED, role, "the history worker exited before taking the row (see the server log)");
				dsm_detach(seg);
				return "lost: the history worker did not start";
			}
			if (state == JOB_COPIED && slot < 0)
			{
				/* It took the row and exited without a word: it could not connect (its log line says why). */
				lost(C_FAILED, role, "the history worker exited before writing the row (see the server log)");
				dsm_detach(seg);
				return "lost: the history worker exited before writing the row";
			}
			break;
		}
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	state = pg_atomic_read_u32(&job->state);
	if (state == JOB_WRITTEN)
		result = "written";
	else if (state == JOB_FAILED)
		result = psprintf("lost: %s", job->reason);	/* the worker counted and logged it */
	else if (slot >= 0 && state == JOB_COPIED)
		result = "handed over";
	else
	{
		count(C_UNCONFIRMED, 1);
		result = "unconfirmed";
	}
	dsm_detach(seg);
	return result;
}

/* At exit: write the call that was still running, without waiting. */
static void
write_pending_at_exit(int code, Datum arg)
{
	dsm_segment *seg;
	HistoryJob *job;
	BackgroundWorkerHandle *handle;
	ResourceOwner oldowner = CurrentResourceOwner;
	MemoryContext oldcxt;

	if (pending_payload == NULL || !IsUnderPostmaster)
		return;
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	CurrentResourceOwner = NULL;	/* a session-lifetime mapping; the pin keeps the segment */
	/* No catalog access here (the transaction may be half aborted): the role was checked at begin. */
	if (!OidIsValid(pending_writer))
		lost(C_UNSAFE_ROLE, NameStr(pending_rolename), "the writer role was unusable when the call began");
	else if ((seg = make_job(pending_payload, pending_roleid, NameStr(pending_rolename), -1, pending_timeout_ms,
							 false)) != NULL)
	{
		job = dsm_segment_address(seg);
		strlcpy(job->outcome, ClientConnectionLost ? "abandoned" : "terminated", sizeof(job->outcome));
		job->latency_ms = (double) (GetCurrentTimestamp() - pending_started) / 1000.0;
		dsm_pin_segment(seg);
		if (start_worker(seg, pending_writer, false, &handle))
			count(C_AT_EXIT, 1);
		else
		{
			dsm_unpin_segment(dsm_segment_handle(seg));
			lost(C_NO_WORKER, NameStr(job->rolename), "no background worker slot for a call its backend left");
		}
		dsm_detach(seg);
	}
	pending_payload = NULL;
	CurrentResourceOwner = oldowner;
	MemoryContextSwitchTo(oldcxt);
}

static char *
jsonb_arg(FunctionCallInfo fcinfo, int n)
{
	Jsonb	   *j = PG_GETARG_JSONB_P(n);

	return JsonbToCString(NULL, &j->root, VARSIZE(j));
}

/* sqlcoder._history_begin(entry jsonb, write_timeout_ms int): remember the call in progress. */
Datum
sqlcoder_history_begin(PG_FUNCTION_ARGS)
{
	char	   *payload = jsonb_arg(fcinfo, 0);
	const char *why = NULL;
	const char *role;

	if (strlen(payload) > MAX_PAYLOAD_BYTES)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("the history entry is %zu bytes; the limit is %d", strlen(payload), MAX_PAYLOAD_BYTES),
						errhint("Call sqlcoder.ask, run or execute; they record their own rows.")));

	if (pending_payload != NULL)
		pfree(pending_payload);
	pending_payload = MemoryContextStrdup(TopMemoryContext, payload);
	pending_roleid = GetUserId();
	role = GetUserNameFromId(pending_roleid, true);
	namestrcpy(&pending_rolename, role ? role : "?");
	pending_writer = writer_role(&why);
	shared_state();
	pending_started = GetCurrentTimestamp();
	pending_timeout_ms = PG_ARGISNULL(1) ? 5000 : PG_GETARG_INT32(1);
	if (!exit_hook_registered)
	{
		before_shmem_exit(write_pending_at_exit, (Datum) 0);
		exit_hook_registered = true;
	}
	PG_RETURN_VOID();
}

/*
 * sqlcoder._history_write(entry jsonb, fold_key text, timeout_ms int,
 * write_timeout_ms int, in_transaction bool) RETURNS text: write one row;
 * never raises for a row that cannot be written (it is counted and logged
 * instead). in_transaction: try the caller's transaction first (a call that
 * succeeded; its statement is not about to fail).
 */
Datum
sqlcoder_history_write(PG_FUNCTION_ARGS)
{
	char	   *payload;
	char	   *key = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	int			timeout_ms = PG_ARGISNULL(2) ? 200 : PG_GETARG_INT32(2);
	int			write_timeout_ms = PG_ARGISNULL(3) ? 5000 : PG_GETARG_INT32(3);
	bool		in_transaction = !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("the history entry must not be NULL")));
	payload = jsonb_arg(fcinfo, 0);
	/* The package cuts each text to 100,000 characters; only a direct call can send more. */
	if (strlen(payload) > MAX_PAYLOAD_BYTES)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("the history entry is %zu bytes; the limit is %d", strlen(payload), MAX_PAYLOAD_BYTES),
						errhint("Call sqlcoder.ask, run or execute; they record their own rows.")));
	if (pending_payload != NULL)
	{
		pfree(pending_payload);
		pending_payload = NULL;
	}
	timeout_ms = Max(timeout_ms, 1);
	write_timeout_ms = Max(write_timeout_ms, 1);
	PG_RETURN_TEXT_P(cstring_to_text(write_row(payload, key, in_transaction, timeout_ms, write_timeout_ms)));
}

/* sqlcoder._history_stats() RETURNS jsonb: the counters, for sqlcoder.status(). */
Datum
sqlcoder_history_stats(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	uint64		c[C_COUNT];
	char		failure[REASON_LEN] = "";
	TimestampTz failure_at = 0;

	shared_state();
	if (shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		memcpy(c, shared->counters, sizeof(c));
		strlcpy(failure, shared->last_failure, REASON_LEN);
		failure_at = shared->last_failure_at;
		SpinLockRelease(&shared->mutex);
	}
	else
		memcpy(c, local_counters, sizeof(c));
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"scope\": \"%s\"", shared != NULL ? "server" : "backend");
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

/* -- the worker ------------------------------------------------------------- */



/* Settings a database's or role's ALTER ... SET must not decide for the writer. */
static void
pin_settings(int write_timeout_ms)
{
	char		ms[32];

	/* statement_timeout is armed by run_statement; a session value would never fire in a worker. */
	snprintf(ms, sizeof(ms), "%d", write_timeout_ms);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", ms, PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("row_security", "on", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("synchronous_commit", "local", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "sqlcoder history writer", PGC_SUSET, PGC_S_OVERRIDE);
}

/* Run one statement in its own transaction under statement_timeout; false (with *reason) on error. */
static bool
run_statement(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int timeout_ms,
			  char *reason, int64 *processed)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		int			rc;

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, sql);
		enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
		rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
		disable_timeout(STATEMENT_TIMEOUT, false);
		if (rc < 0)
			elog(ERROR, "SPI_execute_with_args failed: %d", rc);
		if (processed)
			*processed = (rc == SPI_OK_SELECT && SPI_processed == 1)
				? DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											  &(bool){false}))
				: (int64) SPI_processed;
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		snprintf(reason, REASON_LEN, "%s (SQLSTATE %s)", edata->message, unpack_sql_state(edata->sqlerrcode));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/* Delete rows past retention, a batch a transaction, at most PURGE_MAX_BATCHES. */
static void
purge(int timeout_ms)
{
	char		reason[REASON_LEN];

	for (int i = 0; i < PURGE_MAX_BATCHES; i++)
	{
		int64		deleted = 0;

		if (!run_statement("SELECT sqlcoder._history_purge()", 0, NULL, NULL, NULL, 2 * timeout_ms, reason, &deleted))
		{
			ereport(LOG, (errmsg("sqlcoder: history purge stopped: %s", reason)));
			return;
		}
		if (deleted > 0)
			count(C_PURGED, deleted);
		if (deleted <= 0)
			return;
	}
}

static void
notify(HistoryJob *job)
{
	if (job->notify_procno >= 0)
		SetLatch(&ProcGlobal->allProcs[job->notify_procno].procLatch);
}

void
sqlcoder_history_main(Datum arg)
{
	dsm_handle	h = DatumGetUInt32(arg);
	WorkerArgs	args;
	dsm_segment *seg;
	HistoryJob *src;
	HistoryJob	job;
	char	   *payload;
	Oid			types[5] = {TEXTOID, NAMEOID, TEXTOID, FLOAT8OID, INT4OID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	char		reason[REASON_LEN];
	int32		repeat = 1;
	bool		ok;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* Take the row first: once unpinned, the segment goes with the last process detached from it. */
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "sqlcoder history writer");
	seg = dsm_attach(h);
	if (seg == NULL)
		proc_exit(0);
	src = dsm_segment_address(seg);
	memcpy(&job, src, offsetof(HistoryJob, payload));
	payload = MemoryContextAlloc(TopMemoryContext, src->payload_len + 1);
	memcpy(payload, src->payload, src->payload_len + 1);
	pg_atomic_write_u32(&src->state, JOB_COPIED);
	dsm_unpin_segment(h);
	notify(src);

	/* By OID: no name, no connection string, no authentication; only this role's privileges. */
	BackgroundWorkerInitializeConnectionByOid(args.dbid, args.writer, 0);

	pin_settings(job.write_timeout_ms);
	StartTransactionCommand();
	shared_state();
	CommitTransactionCommand();

	if (job.purge_only)
	{
		purge(job.write_timeout_ms);
		proc_exit(0);
	}

	/* A folded row waits for its window to close, then takes the count. */
	if (job.fold_slot >= 0 && shared != NULL)
	{
		long		wait_ms;

		SpinLockAcquire(&shared->mutex);
		wait_ms = FOLD_WINDOW_MS - (long) ((GetCurrentTimestamp() - shared->fold[job.fold_slot].started) / 1000);
		SpinLockRelease(&shared->mutex);
		while (wait_ms > 0)
		{
			TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);

			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			wait_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		}
		SpinLockAcquire(&shared->mutex);
		repeat = shared->fold[job.fold_slot].count;
		shared->fold[job.fold_slot].open = false;
		SpinLockRelease(&shared->mutex);
	}

	values[0] = CStringGetTextDatum(payload);
	values[1] = NameGetDatum(&job.rolename);
	if (job.outcome[0])
		values[2] = CStringGetTextDatum(job.outcome);
	else
		nulls[2] = 'n';
	if (job.latency_ms >= 0)
		values[3] = Float8GetDatum(job.latency_ms);
	else
		nulls[3] = 'n';
	values[4] = Int32GetDatum(repeat);
	/* Twice the lock timeout: a wait for a lock says so, anything else stuck ends as a statement timeout. */
	ok = run_statement(insert_sql, 5, types, values, nulls, 2 * job.write_timeout_ms, reason, NULL);
	if (ok)
	{
		count(C_WRITTEN, 1);
		pg_atomic_write_u32(&src->state, JOB_WRITTEN);
	}
	else
	{
		strlcpy(src->reason, reason, REASON_LEN);
		pg_atomic_write_u32(&src->state, JOB_FAILED);
		lost(C_FAILED, NameStr(job.rolename), reason);
	}
	notify(src);
	dsm_detach(seg);
	if (ok && purge_due())
		purge(job.write_timeout_ms);
	proc_exit(0);
}

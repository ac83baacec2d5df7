/*
 * src/history_write.c: the backend side of sqlcoder.history rows:
 * sqlcoder._history_begin() and sqlcoder._history_write(), which hand a row
 * to a background worker that runs as a role allowed nothing but to insert it.
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

#include "history.h"

PG_FUNCTION_INFO_V1(sqlcoder_history_begin);
PG_FUNCTION_INFO_V1(sqlcoder_history_write);

/* The call in progress, written at exit if the backend leaves during it. */
static char *pending_payload = NULL;
static Oid	pending_roleid = InvalidOid;
static Oid	pending_writer = InvalidOid;
static NameData pending_rolename;
static TimestampTz pending_started = 0;
static int	pending_timeout_ms = 5000;
static bool exit_hook_registered = false;
/* A worker that only purges; nothing waits for it. */
static void
start_purge(Oid writer, int write_timeout_ms)
{
	dsm_segment *seg = history_make_job("{}", InvalidOid, "-", -1, write_timeout_ms, false);
	BackgroundWorkerHandle *handle;

	if (seg == NULL)
		return;
	((HistoryJob *) dsm_segment_address(seg))->purge_only = true;
	dsm_pin_segment(seg);
	if (!history_start_worker(seg, writer, false, &handle))
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

	history_shared_state();
	history_count(C_CALLS, 1);
	if (RecoveryInProgress())
	{
		/* A hot standby cannot write: counted, and logged once per backend rather than per call. */
		static bool logged = false;

		history_count(C_FAILED, 1);
		if (!logged)
			ereport(LOG, (errmsg("sqlcoder: history rows are not written on a standby (counted as lost_failed)")));
		logged = true;
		return "lost: the server is a standby";
	}
	if (fold_on != NULL && history_fold(roleid, fold_on, &slot))
	{
		history_count(C_FOLDED, 1);
		return "folded";
	}
	writer = history_writer_role(&why);
	if (!OidIsValid(writer))
	{
		history_release_slot(slot);
		history_lost(C_UNSAFE_ROLE, role, why);
		return psprintf("lost: %s", why);
	}
	/* Half the wait for a lock in the caller's transaction, the rest for a worker. */
	if (in_transaction && slot < 0 && history_write_in_transaction(payload, roleid, role ? role : "?", writer,
														   Max(timeout_ms / 2, 1), write_timeout_ms))
	{
		/* Rows written this way start no worker: start one for retention now and then. */
		if (history_purge_due())
			start_purge(writer, write_timeout_ms);
		return "written in the caller's transaction";
	}
	seg = history_make_job(payload, roleid, role ? role : "?", slot, write_timeout_ms, true);
	if (seg == NULL)
	{
		history_release_slot(slot);
		history_lost(C_NO_WORKER, role, "no dynamic shared memory segment left");
		return "lost: no dynamic shared memory segment left";
	}
	job = dsm_segment_address(seg);
	/* Pinned: the row outlives this backend's wait, and this backend. */
	dsm_pin_segment(seg);
	/* No free worker slot: try again until the deadline (others finish in milliseconds). */
	while (!history_start_worker(seg, writer, true, &handle))
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);

		if (left <= 0)
		{
			dsm_unpin_segment(dsm_segment_handle(seg));
			dsm_detach(seg);
			history_release_slot(slot);
			history_lost(C_NO_WORKER, role, "no background worker slot free within history_timeout_ms "
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
				history_release_slot(slot);
				history_lost(C_FAILED, role, "the history worker exited before taking the row (see the server log)");
				dsm_detach(seg);
				return "lost: the history worker did not start";
			}
			if (state == JOB_COPIED && slot < 0)
			{
				/* It took the row and exited without a word: it could not connect (its log line says why). */
				history_lost(C_FAILED, role, "the history worker exited before writing the row (see the server log)");
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
		history_count(C_UNCONFIRMED, 1);
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
		history_lost(C_UNSAFE_ROLE, NameStr(pending_rolename), "the writer role was unusable when the call began");
	else if ((seg = history_make_job(pending_payload, pending_roleid, NameStr(pending_rolename), -1, pending_timeout_ms,
							 false)) != NULL)
	{
		job = dsm_segment_address(seg);
		strlcpy(job->outcome, ClientConnectionLost ? "abandoned" : "terminated", sizeof(job->outcome));
		job->latency_ms = (double) (GetCurrentTimestamp() - pending_started) / 1000.0;
		dsm_pin_segment(seg);
		if (history_start_worker(seg, pending_writer, false, &handle))
			history_count(C_AT_EXIT, 1);
		else
		{
			dsm_unpin_segment(dsm_segment_handle(seg));
			history_lost(C_NO_WORKER, NameStr(job->rolename), "no background worker slot for a call its backend left");
		}
		dsm_detach(seg);
	}
	pending_payload = NULL;
	CurrentResourceOwner = oldowner;
	MemoryContextSwitchTo(oldcxt);
}

static char *
history_payload_arg(FunctionCallInfo fcinfo, int n)
{
	Jsonb	   *j;
	char	   *payload;

	/* Granted roles can call these functions directly, with anything. */
	if (PG_ARGISNULL(n))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("the history entry must not be NULL")));
	j = PG_GETARG_JSONB_P(n);
	payload = JsonbToCString(NULL, &j->root, VARSIZE(j));
	/* The package cuts each text to 100,000 characters; only a direct call can send more. */
	if (strlen(payload) > MAX_PAYLOAD_BYTES)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("the history entry is %zu bytes; the limit is %d", strlen(payload), MAX_PAYLOAD_BYTES),
						errhint("Call sqlcoder.ask, run or execute; they record their own rows.")));
	return payload;
}

/* sqlcoder._history_begin(entry jsonb, write_timeout_ms int): remember the call in progress. */
Datum
sqlcoder_history_begin(PG_FUNCTION_ARGS)
{
	char	   *payload = history_payload_arg(fcinfo, 0);
	const char *why = NULL;
	const char *role;

	if (pending_payload != NULL)
		pfree(pending_payload);
	pending_payload = MemoryContextStrdup(TopMemoryContext, payload);
	pending_roleid = GetUserId();
	role = GetUserNameFromId(pending_roleid, true);
	namestrcpy(&pending_rolename, role ? role : "?");
	pending_writer = history_writer_role(&why);
	history_shared_state();
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

	payload = history_payload_arg(fcinfo, 0);
	if (pending_payload != NULL)
	{
		pfree(pending_payload);
		pending_payload = NULL;
	}
	timeout_ms = Max(timeout_ms, 1);
	write_timeout_ms = Max(write_timeout_ms, 1);
	PG_RETURN_TEXT_P(cstring_to_text(write_row(payload, key, in_transaction, timeout_ms, write_timeout_ms)));
}


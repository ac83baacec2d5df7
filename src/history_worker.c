/*
 * src/history_worker.c: the background worker that writes one history row
 * (or only purges rows past retention), and what the backend needs to start
 * it: the job put in a dynamic shared memory segment and the worker's
 * registration. The worker connects by OID to the caller's database as
 * sqlcoder_history_writer, pins its own settings and inserts with SPI.
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

PGDLLEXPORT void sqlcoder_history_main(Datum arg);

/* -- the backend side ------------------------------------------------------- */

/* $1 the row (JSON), $2 the role, $3 an outcome and $4 a latency that override the row's, $5 repeat_count. */
const char *const history_insert_sql =
"INSERT INTO sqlcoder.history (role, operation, question, sql, model, model_ms, query_ms, latency_ms, "
"row_count, truncated, outcome, error_sqlstate, error, repeat_count, attempts) "
"SELECT $2, r.operation, r.question, r.sql, r.model, r.model_ms, r.query_ms, COALESCE($4, r.latency_ms), "
"r.row_count, r.truncated, COALESCE($3, r.outcome, 'error'), r.error_sqlstate, r.error, $5, r.attempts "
"FROM pg_catalog.jsonb_to_record($1::pg_catalog.jsonb) AS r(operation text, question text, sql text, "
"model text, model_ms float8, query_ms float8, latency_ms float8, row_count int8, truncated bool, "
"outcome text, error_sqlstate text, error text, attempts pg_catalog.jsonb)";

dsm_segment *
history_make_job(const char *payload, Oid roleid, const char *rolename, int fold_slot, int write_timeout_ms, bool notify)
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

bool
history_start_worker(dsm_segment *seg, Oid writer, bool notify, BackgroundWorkerHandle **handle)
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
			history_count(C_PURGED, deleted);
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
	history_shared_state();
	CommitTransactionCommand();

	if (job.purge_only)
	{
		purge(job.write_timeout_ms);
		proc_exit(0);
	}

	/* A folded row waits for its window to close, then takes the count. */
	if (job.fold_slot >= 0 && history_shared != NULL)
	{
		long		wait_ms;

		SpinLockAcquire(&history_shared->mutex);
		wait_ms = FOLD_WINDOW_MS - (long) ((GetCurrentTimestamp() - history_shared->fold[job.fold_slot].started) / 1000);
		SpinLockRelease(&history_shared->mutex);
		while (wait_ms > 0)
		{
			TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);

			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			wait_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		}
		SpinLockAcquire(&history_shared->mutex);
		repeat = history_shared->fold[job.fold_slot].count;
		history_shared->fold[job.fold_slot].open = false;
		SpinLockRelease(&history_shared->mutex);
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
	ok = run_statement(history_insert_sql, 5, types, values, nulls, 2 * job.write_timeout_ms, reason, NULL);
	if (ok)
	{
		history_count(C_WRITTEN, 1);
		pg_atomic_write_u32(&src->state, JOB_WRITTEN);
	}
	else
	{
		strlcpy(src->reason, reason, REASON_LEN);
		pg_atomic_write_u32(&src->state, JOB_FAILED);
		history_lost(C_FAILED, NameStr(job.rolename), reason);
	}
	notify(src);
	dsm_detach(seg);
	if (ok && history_purge_due())
		purge(job.write_timeout_ms);
	proc_exit(0);
}

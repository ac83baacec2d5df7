/*
 * src/history_writer.c: the one background worker per database that writes
 * sqlcoder.history rows from that database's ring (history_queue.c), keeps
 * each role under history_max_bytes_per_role, and purges rows past
 * retention once a minute. It connects by OID as sqlcoder_history_writer,
 * pins its own settings, inserts each row in its own transaction with SPI,
 * and leaves after WRITER_IDLE_MS without rows, so that an idle database
 * holds no worker (and DROP DATABASE does not wait for one).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "history.h"

#define WRITER_IDLE_MS		2000
#define PURGE_MAX_BATCHES	10
#define ROLE_BYTES_FRESH_MS 5000

PGDLLEXPORT void sqlcoder_history_main(Datum arg);

/* bgw_extra: which database, as which role. */
typedef struct WriterArgs
{
	Oid			dbid;
	Oid			writer;
} WriterArgs;

/* A folded row waiting for its window to close; at most one per fold slot. */
typedef struct Deferred
{
	dlist_node	node;
	HistoryRow	row;
	TimestampTz due;
} Deferred;

/* Bytes of each role's rows, read once from the table and kept up to date here. */
typedef struct RoleBytes
{
	NameData	role;			/* hash key */
	int64		bytes;
	int64		max_bytes;		/* history_max_bytes_per_role when read */
	TimestampTz read_at;		/* read again after ROLE_BYTES_FRESH_MS: a DBA's new limit applies soon */
} RoleBytes;

static dlist_head deferred = DLIST_STATIC_INIT(deferred);
static HTAB *role_bytes = NULL;

/* $1 the row (JSON), $2 the role, $3 an outcome and $4 a latency that override the row's, $5 repeat_count. */
static const char *const insert_sql =
"INSERT INTO sqlcoder.history (role, operation, question, sql, model, model_ms, query_ms, latency_ms, "
"row_count, truncated, outcome, error_sqlstate, error, repeat_count, attempts, output) "
"SELECT $2, r.operation, r.question, r.sql, r.model, r.model_ms, r.query_ms, COALESCE($4, r.latency_ms), "
"r.row_count, r.truncated, COALESCE($3, r.outcome, 'error'), r.error_sqlstate, r.error, $5, r.attempts, "
"r.output "
"FROM pg_catalog.jsonb_to_record($1::pg_catalog.jsonb) AS r(operation text, question text, sql text, "
"model text, model_ms float8, query_ms float8, latency_ms float8, row_count int8, truncated bool, "
"outcome text, error_sqlstate text, error text, attempts pg_catalog.jsonb, output text)";

/* -- starting it (from a backend) -------------------------------------------- */

bool
history_start_writer(Oid dbid, Oid writer)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	WriterArgs	args = {dbid, writer};

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "sqlcoder_pg");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "sqlcoder_history_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "sqlcoder history writer");
	snprintf(worker.bgw_type, BGW_MAXLEN, "sqlcoder history writer");
	worker.bgw_notify_pid = 0;
	memcpy(worker.bgw_extra, &args, sizeof(args));
	return RegisterDynamicBackgroundWorker(&worker, &handle);
}

/* -- the worker --------------------------------------------------------------- */

/* Settings a database's or role's ALTER ... SET must not decide for the writer. */
static void
pin_settings(void)
{
	/* statement_timeout and lock_timeout are armed per statement by run_statement. */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("row_security", "on", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("synchronous_commit", "local", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "sqlcoder history writer", PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * Run one statement in its own transaction, under lock_timeout = timeout_ms
 * and a statement timeout of twice that (a wait for a lock says so, anything
 * else stuck ends as a statement timeout). false (with reason) on error;
 * result[0..nresult-1]: the first columns of the first row (NULL as 0).
 */
static bool
run_statement(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int timeout_ms,
			  char *reason, int64 *result, int nresult)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;
	char		ms[32];

	snprintf(ms, sizeof(ms), "%d", timeout_ms);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		int			rc;

		SetConfigOption("lock_timeout", ms, PGC_SUSET, PGC_S_OVERRIDE);
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, sql);
		enable_timeout_after(STATEMENT_TIMEOUT, Min(2 * (int64) timeout_ms, INT_MAX));
		rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
		disable_timeout(STATEMENT_TIMEOUT, false);
		if (rc < 0)
			elog(ERROR, "SPI_execute_with_args failed: %d", rc);
		for (int i = 0; i < nresult; i++)
		{
			bool		isnull = true;
			Datum		d = 0;

			if (SPI_processed >= 1 && SPI_tuptable != NULL && i < SPI_tuptable->tupdesc->natts)
				d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &isnull);
			result[i] = isnull ? 0 : DatumGetInt64(d);
		}
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
		snprintf(reason, HISTORY_REASON_LEN, "%s (SQLSTATE %s)", edata->message,
				 unpack_sql_state(edata->sqlerrcode));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(cxt);
	return ok;
}

/* What the role's rows hold now, from the table the first time, then as counted here. */
static RoleBytes *
bytes_of(const NameData *role, int timeout_ms)
{
	bool		found;
	RoleBytes  *rb = hash_search(role_bytes, role, HASH_ENTER, &found);

	if (!found || TimestampDifferenceExceeds(rb->read_at, GetCurrentTimestamp(), ROLE_BYTES_FRESH_MS))
	{
		Oid			types[1] = {NAMEOID};
		Datum		values[1] = {NameGetDatum(role)};
		char		reason[HISTORY_REASON_LEN];
		int64		got[2] = {0, PG_INT64_MAX};

		if (!run_statement("SELECT * FROM sqlcoder_internal._history_role_bytes($1)", 1, types, values, NULL, timeout_ms,
						   reason, got, 2))
		{
			ereport(LOG, (errmsg("sqlcoder: could not read the history bytes of role \"%s\": %s",
								 NameStr(*role), reason)));
			got[1] = PG_INT64_MAX;
		}
		rb->bytes = got[0];
		rb->read_at = GetCurrentTimestamp();
		rb->max_bytes = got[1] > 0 ? got[1] : PG_INT64_MAX;
	}
	return rb;
}

/* Delete the role's oldest rows past history_max_bytes_per_role; the SQL function returns what is left. */
static void
trim_role(RoleBytes *rb, int timeout_ms)
{
	Oid			types[1] = {NAMEOID};
	Datum		values[1] = {NameGetDatum(&rb->role)};
	char		reason[HISTORY_REASON_LEN];
	int64		left = 0;

	if (run_statement("SELECT sqlcoder_internal._history_trim_role($1)", 1, types, values, NULL, timeout_ms, reason, &left, 1))
		rb->bytes = left;
	else
		ereport(LOG, (errmsg("sqlcoder: could not trim the history of role \"%s\": %s", NameStr(rb->role), reason)));
}

static bool
write_row(HistoryRow *row, int32 repeat, char *reason)
{
	Oid			types[5] = {TEXTOID, NAMEOID, TEXTOID, FLOAT8OID, INT4OID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	const char *why = NULL;
	RoleBytes  *rb;

	/* The role is checked again before each row: one changed since the writer started is never used. */
	StartTransactionCommand();
	if (!OidIsValid(history_writer_role(&why)))
	{
		CommitTransactionCommand();
		strlcpy(reason, why, HISTORY_REASON_LEN);
		return false;
	}
	CommitTransactionCommand();
	values[0] = CStringGetTextDatum(row->payload);
	values[1] = NameGetDatum(&row->rolename);
	if (row->outcome[0])
		values[2] = CStringGetTextDatum(row->outcome);
	else
		nulls[2] = 'n';
	if (row->latency_ms >= 0)
		values[3] = Float8GetDatum(row->latency_ms);
	else
		nulls[3] = 'n';
	values[4] = Int32GetDatum(repeat);
	rb = bytes_of(&row->rolename, row->write_timeout_ms);	/* read before the row goes in */
	if (!run_statement(insert_sql, 5, types, values, nulls, row->write_timeout_ms, reason, NULL, 0))
		return false;
	/* The row's text is about its JSON's length (the column bytes is exact; trimming reads that). */
	rb->bytes += 200 + row->payload_len;
	if (rb->bytes > rb->max_bytes)
		trim_role(rb, row->write_timeout_ms);
	return true;
}

static void
write_and_count(HistoryRow *row, int32 repeat)
{
	char		reason[HISTORY_REASON_LEN];

	if (write_row(row, repeat, reason))
		history_count(HC_WRITTEN, 1);
	else
		history_lost(HC_FAILED, NameStr(row->rolename), reason);
}

/* Delete rows past retention, a batch a transaction, at most PURGE_MAX_BATCHES; re-read each role's bytes. */
static void
purge(void)
{
	char		reason[HISTORY_REASON_LEN];

	for (int i = 0; i < PURGE_MAX_BATCHES; i++)
	{
		int64		deleted = 0;

		if (!run_statement("SELECT sqlcoder_internal._history_purge()", 0, NULL, NULL, NULL, 5000, reason, &deleted, 1))
		{
			ereport(LOG, (errmsg("sqlcoder: history purge stopped: %s", reason)));
			break;
		}
		if (deleted > 0)
			history_count(HC_PURGED, deleted);
		if (deleted <= 0)
			break;
	}
	/* Others may have deleted rows, or feedback grown them: count afresh from the table. */
	hash_destroy(role_bytes);
	role_bytes = NULL;
}

static void
make_role_bytes(void)
{
	HASHCTL		ctl;

	if (role_bytes != NULL)
		return;
	ctl.keysize = sizeof(NameData);
	ctl.entrysize = sizeof(RoleBytes);
	ctl.hcxt = TopMemoryContext;
	role_bytes = hash_create("sqlcoder history role bytes", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Write the folded rows whose window has closed; returns ms until the next is due (-1: none). */
static long
write_due(MemoryContext rowcxt)
{
	dlist_mutable_iter it;
	long		next = -1;
	TimestampTz now = GetCurrentTimestamp();

	dlist_foreach_modify(it, &deferred)
	{
		Deferred   *d = dlist_container(Deferred, node, it.cur);
		long		left = TimestampDifferenceMilliseconds(now, d->due);

		if (left <= 0)
		{
			MemoryContext old = MemoryContextSwitchTo(rowcxt);

			dlist_delete(&d->node);
			write_and_count(&d->row, history_take_fold(d->row.fold_slot));
			MemoryContextSwitchTo(old);
			pfree((char *) d->row.payload);
			pfree(d);
		}
		else if (next < 0 || left < next)
			next = left;
	}
	return next;
}

void
sqlcoder_history_main(Datum arg)
{
	WriterArgs	args;
	MemoryContext rowcxt;
	TimestampTz idle_since;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* By OID: no name, no connection string, no authentication; only this role's privileges. */
	BackgroundWorkerInitializeConnectionByOid(args.dbid, args.writer, 0);
	pin_settings();
	StartTransactionCommand();
	if (!history_attach_as_writer(args.dbid))
	{
		CommitTransactionCommand();
		proc_exit(0);			/* another writer has this database's ring */
	}
	CommitTransactionCommand();
	make_role_bytes();
	rowcxt = AllocSetContextCreate(TopMemoryContext, "sqlcoder history row", ALLOCSET_DEFAULT_SIZES);
	idle_since = GetCurrentTimestamp();

	for (;;)
	{
		HistoryRow	row;
		uint64		seq;
		long		next_due;
		long		wait_ms;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(rowcxt);
		if (history_dequeue(&row, &seq))
		{
			if (row.fold_slot >= 0)
			{
				/* Taken: the caller stops waiting; the row is written with its count when the window closes. */
				Deferred   *d = MemoryContextAllocZero(TopMemoryContext, sizeof(Deferred));

				d->row = row;
				d->row.payload = MemoryContextStrdup(TopMemoryContext, row.payload);
				d->due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 history_fold_wait_ms(row.fold_slot));
				dlist_push_tail(&deferred, &d->node);
				history_finish(seq, true);
			}
			else
			{
				char		reason[HISTORY_REASON_LEN];
				bool		ok = write_row(&row, 1, reason);

				history_finish(seq, ok);
				if (ok)
					history_count(HC_WRITTEN, 1);
				else
					history_lost(HC_FAILED, NameStr(row.rolename), reason);
			}
			idle_since = GetCurrentTimestamp();
			(void) write_due(rowcxt);
			continue;
		}
		next_due = write_due(rowcxt);
		/* Not while a folded row waits for its window: retention sees every row queued before it. */
		if (next_due < 0 && history_purge_due())
		{
			purge();
			make_role_bytes();
		}
		if (next_due < 0 && TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(), WRITER_IDLE_MS) &&
			history_writer_may_exit())
			proc_exit(0);
		wait_ms = next_due >= 0 ? Min(next_due, WRITER_IDLE_MS) : WRITER_IDLE_MS;

		/*
		 * Sleep until a backend queues a row (it sets our latch), a folded row
		 * is due, or the idle time is up. WL_EXIT_ON_PM_DEATH, and the
		 * CHECK_FOR_INTERRUPTS above: SIGTERM (die) ends the writer; rows still
		 * queued are taken by the next writer.
		 */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, Max(wait_ms, 1),
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

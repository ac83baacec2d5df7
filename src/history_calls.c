/*
 * src/history_calls.c: the backend side of sqlcoder.history rows:
 * sqlcoder_internal._history_begin(), _history_write() and _history_stats().
 *
 * Why this way: a row must survive the caller's error or rollback, so it is
 * written in a transaction of its own, by the database's history writer
 * (history_writer.c), a background worker connected by OID as the dedicated
 * role sqlcoder_history_writer. Nothing goes by name or connection string
 * (until 0.3.0 a loopback connection could be steered by a database named
 * 'dbname=evil host=...'). The backend copies the row (a JSON text) into the
 * database's ring in shared memory (history_queue.c) and waits for the writer
 * at most history_timeout_ms; a row the caller stopped waiting for is still
 * written. A row that cannot be queued or written is counted and logged with
 * its reason, never raised.
 *
 * _history_begin and _history_write act only inside sqlcoder_internal._invoke (the
 * token, src/invoke.c): a granted role calling them directly gets 42501.
 *
 * A call that is still running when its backend exits (terminated, or the
 * client went away) is queued from a before_shmem_exit callback, with the
 * outcome 'terminated' or 'abandoned'.
 */
#include "postgres.h"

#include "access/xlog.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "history.h"
#include "invoke.h"

PG_FUNCTION_INFO_V1(sqlcoder_history_begin);
PG_FUNCTION_INFO_V1(sqlcoder_history_write);
PG_FUNCTION_INFO_V1(sqlcoder_history_stats);

#define DEFAULT_TIMEOUT_MS 200
#define DEFAULT_WRITE_TIMEOUT_MS 5000

/* The call in progress, queued at exit if the backend leaves during it. */
static char *pending_payload = NULL;
static Oid	pending_roleid = InvalidOid;
static Oid	pending_writer = InvalidOid;
static NameData pending_rolename;
static TimestampTz pending_started = 0;
static int	pending_write_timeout_ms = DEFAULT_WRITE_TIMEOUT_MS;
static bool exit_hook_registered = false;

static void
clear_pending(void)
{
	if (pending_payload != NULL)
		pfree(pending_payload);
	pending_payload = NULL;
}

/* Queue a row and make sure a writer takes it; counts and logs what is lost. */
static HistoryEnqueue
queue_row(HistoryRow *row, Oid writer, TimestampTz deadline, uint64 *seq)
{
	HistoryEnqueue q = history_enqueue(row, deadline, seq);

	switch (q)
	{
		case HQ_QUEUED:
			history_ensure_writer(writer);
			break;
		case HQ_FULL:
			history_lost(HC_QUEUE_FULL, NameStr(row->rolename),
						 "the history queue stayed full for history_timeout_ms (the writer is behind)");
			break;
		case HQ_NO_QUEUE:
			history_lost(HC_NO_QUEUE, NameStr(row->rolename),
						 "more databases are writing history at once than there are history queues");
			break;
		case HQ_NO_MEMORY:
			history_lost(HC_NO_QUEUE, NameStr(row->rolename), "no shared memory for the history queue");
			break;
	}
	return q;
}

/*
 * Hand one row to the writer and wait for it at most timeout_ms. Returns what
 * happened: "written", "folded", "handed over" (a folded row, written when
 * its window closes), "unconfirmed" (still queued when the wait ended), or
 * "lost: <reason>".
 */
static const char *
write_row(const char *payload, const char *fold_on, int timeout_ms, int write_timeout_ms)
{
	HistoryRow	row;
	const char *why = NULL;
	Oid			writer;
	uint64		seq;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	const char *role;
	int			slot = -1;

	memset(&row, 0, sizeof(row));
	row.roleid = GetUserId();
	role = GetUserNameFromId(row.roleid, true);
	namestrcpy(&row.rolename, role ? role : "?");
	row.write_timeout_ms = write_timeout_ms;
	row.latency_ms = -1;
	row.payload = payload;
	row.payload_len = strlen(payload);
	history_count(HC_CALLS, 1);
	if (RecoveryInProgress())
	{
		/* A hot standby cannot write: counted, and logged like any lost row (rate-limited). */
		history_lost(HC_FAILED, NameStr(row.rolename), "the server is a standby");
		return "lost: the server is a standby";
	}
	if (fold_on != NULL && history_fold(row.roleid, fold_on, &slot))
	{
		history_count(HC_FOLDED, 1);
		return "folded";
	}
	row.fold_slot = slot;
	writer = history_writer_role(&why);
	if (!OidIsValid(writer))
	{
		history_release_fold(slot);
		history_lost(HC_UNSAFE_ROLE, NameStr(row.rolename), why);
		return psprintf("lost: %s", why);
	}
	if (queue_row(&row, writer, deadline, &seq) != HQ_QUEUED)
	{
		history_release_fold(slot);
		return "lost: not queued (sqlcoder.status() -> history says why)";
	}
	switch (history_wait(seq, deadline))
	{
		case HO_WRITTEN:
			return slot >= 0 ? "handed over" : "written";
		case HO_FAILED:
			return "lost: the writer could not write it (sqlcoder.status() -> history says why)";
		case HO_PENDING:
			break;
	}
	history_count(HC_UNCONFIRMED, 1);
	return "unconfirmed";
}

/* At exit: queue the call that was still running, without waiting. */
static void
write_pending_at_exit(int code, Datum arg)
{
	HistoryRow	row;
	uint64		seq;
	MemoryContext oldcxt;

	if (pending_payload == NULL || !IsUnderPostmaster)
		return;
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	memset(&row, 0, sizeof(row));
	row.roleid = pending_roleid;
	row.rolename = pending_rolename;
	row.fold_slot = -1;
	row.write_timeout_ms = pending_write_timeout_ms;
	strlcpy(row.outcome, ClientConnectionLost ? "abandoned" : "terminated", sizeof(row.outcome));
	row.latency_ms = (double) (GetCurrentTimestamp() - pending_started) / 1000.0;
	row.payload = pending_payload;
	row.payload_len = strlen(pending_payload);
	/* No catalog access here (the transaction may be half aborted): the role was checked at begin. */
	if (!OidIsValid(pending_writer))
		history_lost(HC_UNSAFE_ROLE, NameStr(pending_rolename), "the writer role was unusable when the call began");
	else if (queue_row(&row, pending_writer, GetCurrentTimestamp(), &seq) == HQ_QUEUED)
		history_count(HC_AT_EXIT, 1);
	pending_payload = NULL;
	MemoryContextSwitchTo(oldcxt);
}

/* Only sqlcoder's own call may write rows; anyone else gets 42501. */
static void
check_token(FunctionCallInfo fcinfo, const char *function)
{
	if (PG_ARGISNULL(0) || !invoke_token_is_current(PG_GETARG_TEXT_PP(0)))
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						errmsg("%s is called by sqlcoder itself, not directly", function),
						errhint("Call sqlcoder.ask, run or execute; they record their own history rows.")));
}

/* An integer argument in [1, max], or the default when NULL; 22023 otherwise. */
static int
ms_arg(FunctionCallInfo fcinfo, int n, const char *name, int dflt, int max)
{
	int32		v;

	if (PG_ARGISNULL(n))
		return dflt;
	v = PG_GETARG_INT32(n);
	if (v < 1 || v > max)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("%s must be between 1 and %d milliseconds, not %d", name, max, v),
						errhint("Set history_timeout_ms and history_write_timeout_ms in sqlcoder.config "
								"within those bounds.")));
	return v;
}

static char *
payload_arg(FunctionCallInfo fcinfo, int n)
{
	Jsonb	   *j;
	char	   *payload;
	size_t		len;

	if (PG_ARGISNULL(n))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("the history entry must not be NULL")));
	j = PG_GETARG_JSONB_P(n);
	if (VARSIZE(j) > 2 * HISTORY_MAX_PAYLOAD)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("the history entry is over %d bytes", HISTORY_MAX_PAYLOAD)));
	payload = JsonbToCString(NULL, &j->root, VARSIZE(j));
	len = strlen(payload);
	/* The package cuts each text to 100,000 characters, so a row near the cap is already a bug. */
	if (len > HISTORY_MAX_PAYLOAD)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("the history entry is %zu bytes; the limit is %d", len, HISTORY_MAX_PAYLOAD)));
	return payload;
}

/* sqlcoder_internal._history_begin(token text, entry jsonb, write_timeout_ms int): remember the call in progress. */
Datum
sqlcoder_history_begin(PG_FUNCTION_ARGS)
{
	char	   *payload;
	const char *why = NULL;
	const char *role;
	int			write_timeout_ms;

	check_token(fcinfo, "sqlcoder_internal._history_begin");
	payload = payload_arg(fcinfo, 1);
	write_timeout_ms = ms_arg(fcinfo, 2, "write_timeout_ms", DEFAULT_WRITE_TIMEOUT_MS, HISTORY_MAX_WRITE_TIMEOUT_MS);
	clear_pending();
	pending_payload = MemoryContextStrdup(TopMemoryContext, payload);
	pending_roleid = GetUserId();
	role = GetUserNameFromId(pending_roleid, true);
	namestrcpy(&pending_rolename, role ? role : "?");
	pending_writer = history_writer_role(&why);
	(void) history_shared_ready();	/* found now: at exit there is no transaction to find it in */
	pending_started = GetCurrentTimestamp();
	pending_write_timeout_ms = write_timeout_ms;
	if (!exit_hook_registered)
	{
		before_shmem_exit(write_pending_at_exit, (Datum) 0);
		exit_hook_registered = true;
	}
	PG_RETURN_VOID();
}

/*
 * sqlcoder_internal._history_write(token text, entry jsonb, fold_key text, timeout_ms
 * int, write_timeout_ms int) RETURNS text: write one row; never raises for a
 * row that cannot be written (it is counted and logged instead).
 */
Datum
sqlcoder_history_write(PG_FUNCTION_ARGS)
{
	char	   *payload;
	char	   *key;
	int			timeout_ms;
	int			write_timeout_ms;

	check_token(fcinfo, "sqlcoder_internal._history_write");
	payload = payload_arg(fcinfo, 1);
	key = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	timeout_ms = ms_arg(fcinfo, 3, "timeout_ms", DEFAULT_TIMEOUT_MS, HISTORY_MAX_TIMEOUT_MS);
	write_timeout_ms = ms_arg(fcinfo, 4, "write_timeout_ms", DEFAULT_WRITE_TIMEOUT_MS, HISTORY_MAX_WRITE_TIMEOUT_MS);
	clear_pending();
	PG_RETURN_TEXT_P(cstring_to_text(write_row(payload, key, timeout_ms, write_timeout_ms)));
}

/* sqlcoder_internal._history_stats() RETURNS jsonb: the counters, for sqlcoder.status(). */
Datum
sqlcoder_history_stats(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(history_stats_json())));
}

/*
 * src/history_xact.c: history rows written in the caller's transaction (the
 * fast path, for calls that succeeded), as the writer role in a
 * security-restricted subtransaction; if that transaction or the
 * subtransaction holding them rolls back, they are handed to a worker then.
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
	seg = history_make_job(payload, roleid, rolename, -1, write_timeout_ms, false);
	if (seg == NULL)
		history_lost(C_NO_WORKER, rolename, "no dynamic shared memory segment left");
	else
	{
		dsm_pin_segment(seg);
		if (history_start_worker(seg, writer, false, &handle))
			history_count(on_success, 1);
		else
		{
			dsm_unpin_segment(dsm_segment_handle(seg));
			history_lost(C_NO_WORKER, rolename, "no background worker slot for a row whose transaction rolled back");
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
				history_count(C_IN_CALLER_XACT, 1);
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
bool
history_write_in_transaction(const char *payload, Oid roleid, const char *role, Oid writer, int timeout_ms,
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
		if (SPI_execute_with_args(history_insert_sql, 5, types, values, nulls, false, 0) != SPI_OK_INSERT)
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


/*
 * src/call_limits.c: limits on what one guarded call may take from the
 * backend it runs in, beyond its time (the watchdog's) and its result
 * (max_result_bytes): memory and temporary files.
 *
 *   sqlcoder_internal._limit_call(max_memory_bytes bigint, max_temp_bytes bigint) -> void
 *
 * Called by the PL/Python side first thing inside the always rolled-back
 * subtransaction of a guarded call; both limits end with that
 * subtransaction, whichever way it ends, and with the transaction.
 *
 * Memory: a soft RLIMIT_AS of the backend's address space at the call's
 * start plus max_memory_bytes. The executor builds each row whole before
 * anyone can count it (24 computed columns of 100 MB are 2.4 GB before the
 * first byte reaches the result receiver), and the planner folds constants
 * before anything runs, so no count in sqlcoder's own code can stop it; an
 * address-space limit makes the allocation that passes it fail, which
 * PostgreSQL turns into ERROR 53200 "out of memory", rolled back like any
 * error, instead of the OOM killer ending some process of the machine.
 * The stack is faulted in down to max_stack_depth first: a stack that had
 * to grow past the limit would be SIGSEGV, and PostgreSQL would restart
 * every session.
 *
 * Temporary files: temp_file_limit, set as a superuser would (it is
 * PGC_SUSET) for the rest of the subtransaction, never above the value in
 * force: a DBA's lower limit stays.
 */
#include "postgres.h"

#include <limits.h>
#include <sys/resource.h>
#include <unistd.h>

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"

PG_FUNCTION_INFO_V1(sqlcoder_limit_call);

/* The limit in force, who owns it and what it replaced; see limit_owner_moves(). */
static bool memory_limited = false;
static struct rlimit memory_saved;
static SubTransactionId memory_owner = InvalidSubTransactionId;
static bool callbacks_registered = false;

static void
memory_restore(void)
{
	if (!memory_limited)
		return;
	memory_limited = false;
	memory_owner = InvalidSubTransactionId;
	if (setrlimit(RLIMIT_AS, &memory_saved) != 0)
		elog(WARNING, "sqlcoder: could not restore the backend's address-space limit: %m");
}

/*
 * The limit belongs to the subtransaction that set it; when that one
 * commits into its parent (PL/Python runs each SPI call in a subtransaction
 * of its own), the parent owns it, until the one that aborts or the
 * transaction's end restores it.
 */
static void
limit_owner_moves(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	if (!memory_limited || memory_owner != mySubid)
		return;
	if (event == SUBXACT_EVENT_COMMIT_SUB)
		memory_owner = parentSubid;
	else if (event == SUBXACT_EVENT_ABORT_SUB)
		memory_restore();
}

static void
limit_at_xact_end(XactEvent event, void *arg)
{
	memory_restore();
}

/* The backend's address space now, in bytes (/proc/self/statm's first field); 0 when unknown. */
static int64
address_space_bytes(void)
{
	FILE	   *f = fopen("/proc/self/statm", "r");
	unsigned long pages = 0;

	if (f == NULL)
		return 0;
	if (fscanf(f, "%lu", &pages) != 1)
		pages = 0;
	fclose(f);
	return (int64) pages * (int64) sysconf(_SC_PAGESIZE);
}

/*
 * Touch every page of the stack PostgreSQL may use (max_stack_depth from
 * its base, plus a margin), so its mapping already has that size when the
 * address-space limit comes: stack growth beyond an RLIMIT_AS is SIGSEGV.
 */
static void
fault_in_stack(void)
{
	pg_stack_base_t base = set_stack_base();	/* the old base, and ours for a moment */
	char		here;
	int64		used;
	int64		want;

	restore_stack_base(base);
	used = (int64) ((char *) base - &here);
	if (used < 0)
		used = -used;
	want = (int64) max_stack_depth * 1024 + 128 * 1024 - used;
	if (want > 0)
	{
		volatile char *block = alloca(want);

		for (int64 i = want - 1; i >= 0; i -= 4096)
			block[i] = 0;
		block[0] = 0;
	}
}

static void
limit_memory(int64 max_memory_bytes)
{
	struct rlimit current;
	struct rlimit wanted;
	int64		now = address_space_bytes();
	rlim_t		limit;

	if (memory_limited || now == 0 || getrlimit(RLIMIT_AS, &current) != 0)
		return;					/* a limit of this call is in force, or none can be computed */
	if (max_memory_bytes > (int64) (RLIM_INFINITY >> 1) - now)
		return;
	limit = (rlim_t) (now + max_memory_bytes);
	if (current.rlim_cur != RLIM_INFINITY && current.rlim_cur < limit)
		return;					/* the server's own limit is lower: it stays */
	if (current.rlim_max != RLIM_INFINITY && current.rlim_max < limit)
		limit = current.rlim_max;
	fault_in_stack();
	wanted.rlim_cur = limit;
	wanted.rlim_max = current.rlim_max;
	if (setrlimit(RLIMIT_AS, &wanted) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("sqlcoder: could not limit the backend's address space: %m")));
	memory_saved = current;
	memory_limited = true;
	memory_owner = GetCurrentSubTransactionId();
}

static void
limit_temp_files(int64 max_temp_bytes)
{
	int64		kb = (max_temp_bytes + 1023) / 1024;
	char		value[32];

	/* temp_file_limit is an int of kB; -1 means none. */
	if (kb > INT_MAX)
		return;
	if (temp_file_limit >= 0 && temp_file_limit <= kb)
		return;
	snprintf(value, sizeof(value), "%lld", (long long) kb);
	(void) set_config_option("temp_file_limit", value, PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0,
							 false);
}

/*
 * sqlcoder_internal._limit_call(max_memory_bytes bigint, max_temp_bytes bigint) RETURNS void
 *
 * A NULL argument leaves that limit alone. Either limit only ever lowers
 * what is in force, so any caller may call it: it gives nothing.
 */
Datum
sqlcoder_limit_call(PG_FUNCTION_ARGS)
{
	if ((!PG_ARGISNULL(0) && PG_GETARG_INT64(0) <= 0) || (!PG_ARGISNULL(1) && PG_GETARG_INT64(1) <= 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sqlcoder: the limits of a call must be positive")));
	if (!callbacks_registered)
	{
		RegisterSubXactCallback(limit_owner_moves, NULL);
		RegisterXactCallback(limit_at_xact_end, NULL);
		callbacks_registered = true;
	}
	if (!PG_ARGISNULL(1))
		limit_temp_files(PG_GETARG_INT64(1));
	if (!PG_ARGISNULL(0))
		limit_memory(PG_GETARG_INT64(0));
	PG_RETURN_VOID();
}

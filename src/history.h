/*
 * src/history.h: declarations shared by the files that write sqlcoder.history
 * rows (history_shmem.c, history_role.c, history_xact.c, history_write.c,
 * history_worker.c); private to this library.
 */
#ifndef SQLCODER_HISTORY_H
#define SQLCODER_HISTORY_H

#include "postgres.h"

#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

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

extern HistoryShared *history_shared;

/* history_shmem.c */
extern HistoryShared *history_shared_state(void);
extern void history_count(Counter c, int64 n);
extern void history_lost(Counter c, const char *role, const char *reason);
extern bool history_fold(Oid roleid, const char *key, int *slot);
extern void history_release_slot(int slot);
extern bool history_purge_due(void);

/* history_role.c */
extern Oid	history_writer_role(const char **why);

/* history_worker.c */
extern const char *const history_insert_sql;
extern dsm_segment *history_make_job(const char *payload, Oid roleid, const char *rolename, int fold_slot,
									 int write_timeout_ms, bool notify);
extern bool history_start_worker(dsm_segment *seg, Oid writer, bool notify, BackgroundWorkerHandle **handle);

/* history_xact.c */
extern bool history_write_in_transaction(const char *payload, Oid roleid, const char *role, Oid writer,
										 int timeout_ms, int write_timeout_ms);

#endif							/* SQLCODER_HISTORY_H */

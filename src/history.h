/*
 * src/history.h: the history writer seam, private to this library.
 *
 * history_queue.c   shared state: counters, the fold table, one bounded ring
 *                   of rows per database and the state of its writer
 * history_writer.c  the one long-lived background worker per database that
 *                   drains its ring into sqlcoder.history
 * history_calls.c   sqlcoder_internal._history_begin/_history_write/_history_stats, the
 *                   backend side, reachable only inside sqlcoder_internal._invoke
 * history_role.c    the safety check on sqlcoder_history_writer
 *
 * Every piece of state is static in the file that owns it; the other files
 * reach it through the functions below.
 */
#ifndef SQLCODER_HISTORY_H
#define SQLCODER_HISTORY_H

#include "postgres.h"

#include "datatype/timestamp.h"

#define HISTORY_WRITER_ROLE		"sqlcoder_history_writer"
/* The longest row text accepted; the package cuts each text to 100,000 characters. */
#define HISTORY_MAX_PAYLOAD		(1024 * 1024)
#define HISTORY_REASON_LEN		200
#define HISTORY_OUTCOME_LEN		32
/* Range of the caller-supplied waits, so that neither overflows nor waits for days. */
#define HISTORY_MAX_TIMEOUT_MS	60000
#define HISTORY_MAX_WRITE_TIMEOUT_MS 600000

typedef enum HistoryCounter
{
	HC_CALLS,					/* rows asked to be written */
	HC_WRITTEN,					/* rows committed by the writer */
	HC_FOLDED,					/* calls folded into another row's repeat_count */
	HC_UNCONFIRMED,				/* the caller stopped waiting after history_timeout_ms */
	HC_QUEUE_FULL,				/* the ring stayed full for history_timeout_ms */
	HC_NO_QUEUE,				/* more databases write history at once than there are rings */
	HC_UNSAFE_ROLE,				/* the writer role is missing or has more than it should */
	HC_FAILED,					/* the writer could not write it (lock, disk, standby, ...) */
	HC_AT_EXIT,					/* queued for a call its backend left (terminated, abandoned) */
	HC_PURGED,					/* rows removed by retention (age, row count, bytes per role) */
	HC_WRITER_STARTS,			/* background workers started for writing */
	HC_COUNT
} HistoryCounter;

/* One row as the backend hands it over and the writer takes it. */
typedef struct HistoryRow
{
	Oid			roleid;			/* the caller's current_user, found here, never passed in */
	NameData	rolename;
	int32		fold_slot;		/* -1: not folded */
	int32		write_timeout_ms;
	char		outcome[HISTORY_OUTCOME_LEN];	/* overrides the payload's outcome when set */
	double		latency_ms;		/* overrides the payload's latency when >= 0 */
	uint32		payload_len;
	const char *payload;		/* JSON text, payload_len bytes */
} HistoryRow;

typedef enum HistoryEnqueue
{
	HQ_QUEUED,					/* *seq says which */
	HQ_FULL,					/* no room before the deadline */
	HQ_NO_QUEUE,				/* no ring for this database */
	HQ_NO_MEMORY				/* no shared memory for the counters, or no DSM segment */
} HistoryEnqueue;

typedef enum HistoryOutcome
{
	HO_PENDING,					/* not taken by the writer yet */
	HO_WRITTEN,					/* committed, or taken for folding */
	HO_FAILED					/* the writer gave up on it (counted, logged) */
} HistoryOutcome;

/* history_queue.c: the shared struct (false: none; counters per backend, nothing queued) */
extern bool history_shared_ready(void);

/* history_queue.c: counters and logging */
extern void history_count(HistoryCounter c, int64 n);
extern void history_lost(HistoryCounter c, const char *role, const char *reason);
extern char *history_stats_json(void);

/* history_queue.c: folding identical refusals within a second */
extern bool history_fold(Oid roleid, const char *key, int *slot);
extern void history_release_fold(int slot);
extern int	history_fold_wait_ms(int slot);
extern int32 history_take_fold(int slot);

/* history_queue.c: the backend side of the ring */
extern HistoryEnqueue history_enqueue(const HistoryRow *row, TimestampTz deadline, uint64 *seq);
extern HistoryOutcome history_wait(uint64 seq, TimestampTz deadline);
extern void history_ensure_writer(Oid writer);

/* history_queue.c: the writer side of the ring */
extern bool history_attach_as_writer(Oid dbid);
extern bool history_dequeue(HistoryRow *row, uint64 *seq);
extern void history_finish(uint64 seq, bool ok);
extern bool history_writer_may_exit(void);
extern bool history_purge_due(void);

/* history_writer.c */
extern bool history_start_writer(Oid dbid, Oid writer);

/* history_role.c */
extern Oid	history_writer_role(const char **why);

#endif							/* SQLCODER_HISTORY_H */

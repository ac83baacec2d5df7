/*
 * src/client_check.c: is the client of this backend still connected?
 *
 * While sqlcoder.ask or run waits on the model, the backend runs Python, not
 * PostgreSQL's command loop, so it never reads the client socket and would
 * not notice a client that went away (psql killed, a pool timing out) until
 * the model answered. client_connection_check_interval only checks while a
 * query runs and then ends the backend with FATAL, with no chance to cancel
 * the daemon request or record the call. So the wait loop
 * (python/sqlcoder/client.py, via api._checker) asks this function every
 * poll slice and gives up itself.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/latch.h"

/*
 * From libpq/libpq.h, declared here because that header pulls in
 * libpq-be.h and with it gssapi/gssapi.h, which a server built with GSSAPI
 * needs but postgresql-server-dev does not install (libkrb5-dev).
 */
extern PGDLLIMPORT WaitEventSet *FeBeWaitSet;
extern bool pq_check_connection(void);

PG_FUNCTION_INFO_V1(sqlcoder_client_connected);

/*
 * sqlcoder_internal._client_connected() RETURNS boolean
 *
 * false when the client's socket has been closed by its peer
 * (pq_check_connection(): a zero-timeout poll for POLLRDHUP on the socket,
 * PostgreSQL 14+; it consumes nothing the client sent). A backend without a
 * client connection (a background worker) always answers true.
 */
Datum
sqlcoder_client_connected(PG_FUNCTION_ARGS)
{
	if (MyProcPort == NULL || FeBeWaitSet == NULL)
		PG_RETURN_BOOL(true);
	PG_RETURN_BOOL(pq_check_connection());
}

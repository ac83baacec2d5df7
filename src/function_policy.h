/*
 * src/function_policy.h: the guard's function policy, decided in C for every
 * function PostgreSQL is about to call during a guarded call
 * (function_policy.c); private to this library.
 */
#ifndef SQLCODER_FUNCTION_POLICY_H
#define SQLCODER_FUNCTION_POLICY_H

#include "postgres.h"

/*
 * Refuse funcid (42501, the function named with its signature, a HINT with
 * the sqlcoder.allow_function call a DBA would run) when the policy refuses
 * it; "phase" says what PostgreSQL was doing (shown in DETAIL).
 */
extern void function_policy_enforce(Oid funcid, const char *phase);

/* True when the policy refuses funcid (cached for the current policy). */
extern bool function_policy_refuses(Oid funcid);

/*
 * True for procedural-language code owned by a role that is not a superuser:
 * refused wherever a guarded call reaches it, unless a DBA allowed it.
 */
extern bool function_policy_is_planted_code(Oid funcid);

/* Drop the lists handed over by sqlcoder_internal._guard_policy (end of its scope). */
extern void function_policy_forget(void);

/* pg_aggregate's support-function columns, in the order aggregate_support_functions fills them. */
#define AGGREGATE_SUPPORT_FUNCTIONS 8
extern bool aggregate_support_functions(Oid aggfnoid, Oid support[AGGREGATE_SUPPORT_FUNCTIONS]);

#endif							/* SQLCODER_FUNCTION_POLICY_H */

/*
 * src/policy_hook.h: the hooks that put the function policy where
 * PostgreSQL calls functions, armed only while a guarded call analyzes,
 * plans or runs the model's SQL (policy_hook.c); private to this library.
 */
#ifndef SQLCODER_POLICY_HOOK_H
#define SQLCODER_POLICY_HOOK_H

#include "postgres.h"

/* Install the hooks (once, when the library is loaded). */
extern void policy_hook_install(void);

/*
 * Arm the policy for what follows; "phase" says what PostgreSQL is about to
 * do ("planning the query"). Returns the previous state, which the caller
 * hands to policy_hook_restore in PG_FINALLY, so errors and nested calls
 * always leave the hooks as they found them. Arming also turns parallel
 * workers off (max_parallel_workers_per_gather = 0, GUC_ACTION_LOCAL): call
 * it only from a function declared with a SET clause, which restores it.
 */
extern const char *policy_hook_arm(const char *phase);
extern void policy_hook_restore(const char *previous);

#endif							/* SQLCODER_POLICY_HOOK_H */

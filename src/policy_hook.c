/*
 * src/policy_hook.c: the function policy (function_policy.c) at every place
 * PostgreSQL calls a function, while a guarded call is armed: parse analysis
 * (sqlcoder_internal._query_objects), planning (sqlcoder_internal._readonly_explain) and
 * running the query with building its rows (sqlcoder_internal._run_readonly).
 *
 * Three hooks, because no one of them sees every path:
 *
 *   object_access_hook, OAT_FUNCTION_EXECUTE: raised before the executor's
 *     expression machinery sets up a call (ExecInitFunc: function calls,
 *     operators, casts, domain CHECKs, defaults and negators the planner
 *     inserted, constants it folds; set-returning functions; aggregates;
 *     window functions). Built-in functions included, once per expression,
 *     not per row.
 *   needs_fmgr_hook / fmgr_hook: fmgr_info asks needs_fmgr_hook about every
 *     function that is not built in; a "yes" sends each call through
 *     fmgr_hook first. This sees calls that never pass the executor: a
 *     type's cast to json run by row-to-JSON conversion, a range type's
 *     subtype_diff run by the planner's estimates, an aggregate's transition
 *     function. While armed the answer is "yes" for what the policy refuses
 *     (so the planner does not inline it either); while not armed, "yes" for
 *     procedural-language code owned by a role that is not a superuser, so a
 *     call set up outside a guarded call (a type cache entry) is still seen
 *     when it later runs inside one.
 *   get_relation_info_hook: the planner reaching a foreign table, whose
 *     wrapper's routines are called through pointers the relation cache
 *     keeps, not through fmgr: its handler is decided like a function.
 *
 * Parallel workers would run parts of the plan with the hooks unarmed, so
 * arming also sets max_parallel_workers_per_gather to 0 for the rest of the
 * armed C function's call (each is declared with a SET clause, whose GUC
 * level undoes it on return).
 *
 * Outside an armed region every hook returns at once (needs_fmgr_hook aside,
 * which costs one syscache lookup per fmgr_info of a function that is not
 * built in). Arming is saved and restored by each caller in PG_FINALLY, and
 * cleared at every transaction end besides.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "fmgr.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "nodes/pathnodes.h"
#include "optimizer/plancat.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "function_policy.h"
#include "policy_hook.h"

static object_access_hook_type prev_object_access_hook = NULL;
static needs_fmgr_hook_type prev_needs_fmgr_hook = NULL;
static fmgr_hook_type prev_fmgr_hook = NULL;
static get_relation_info_hook_type prev_get_relation_info_hook = NULL;

static const char *armed_phase = NULL;	/* NULL: not armed */

const char *
policy_hook_arm(const char *phase)
{
	const char *previous = armed_phase;

	/*
	 * Parallel workers would run parts of the plan with the hooks unarmed
	 * (their state is this backend's): none for the rest of the caller's
	 * call, whose SET clause restores the setting when it returns.
	 */
	(void) set_config_option("max_parallel_workers_per_gather", "0", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	armed_phase = phase;
	return previous;
}

void
policy_hook_restore(const char *previous)
{
	armed_phase = previous;
}

static void
policy_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (armed_phase != NULL && access == OAT_FUNCTION_EXECUTE)
		function_policy_enforce(objectId, armed_phase);
}

static bool
policy_needs_fmgr(Oid fn_oid)
{
	if (prev_needs_fmgr_hook && prev_needs_fmgr_hook(fn_oid))
		return true;
	if (armed_phase != NULL)
		return function_policy_refuses(fn_oid);
	return function_policy_is_planted_code(fn_oid);
}

static void
policy_fmgr(FmgrHookEventType event, FmgrInfo *flinfo, Datum *private)
{
	if (prev_fmgr_hook)
		prev_fmgr_hook(event, flinfo, private);
	if (event == FHET_START && armed_phase != NULL)
		function_policy_enforce(flinfo->fn_oid, armed_phase);
}

static void
policy_relation_info(PlannerInfo *root, Oid relationObjectId, bool inhparent, RelOptInfo *rel)
{
	if (prev_get_relation_info_hook)
		prev_get_relation_info_hook(root, relationObjectId, inhparent, rel);
	if (armed_phase != NULL && get_rel_relkind(relationObjectId) == RELKIND_FOREIGN_TABLE)
	{
		ForeignServer *server = GetForeignServer(GetForeignServerIdByRelId(relationObjectId));

		function_policy_enforce(GetForeignDataWrapper(server->fdwid)->fdwhandler, armed_phase);
	}
}

static void
policy_hook_xact_callback(XactEvent event, void *arg)
{
	armed_phase = NULL;
}

void
policy_hook_install(void)
{
	prev_object_access_hook = object_access_hook;
	object_access_hook = policy_object_access;
	prev_needs_fmgr_hook = needs_fmgr_hook;
	needs_fmgr_hook = policy_needs_fmgr;
	prev_fmgr_hook = fmgr_hook;
	fmgr_hook = policy_fmgr;
	prev_get_relation_info_hook = get_relation_info_hook;
	get_relation_info_hook = policy_relation_info;
	RegisterXactCallback(policy_hook_xact_callback, NULL);
}

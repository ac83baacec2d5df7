/*
 * src/analysis_hook.c: the object-access hook sqlcoder._query_objects()
 * installs while it analyzes a statement.
 *
 * One thing can run during parse analysis: a literal of an array, composite
 * or range type whose elements are a domain is built by array_in, record_in
 * or range_in, which evaluate the domain's CHECK constraints, and a CHECK can
 * call any function. While analyzing, an object-access hook sees every
 * function the executor's expression machinery is about to call
 * (OAT_FUNCTION_EXECUTE, from ExecInitFunc) and lets only immutable
 * pg_catalog functions through; anything else is refused (42501) before it
 * runs.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "catalog/dependency.h"
#include "commands/extension.h"
#include "executor/functions.h"
#include "fmgr.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/parser.h"
#include "rewrite/rewriteHandler.h"
#include "tcop/cmdtag.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/resowner.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "query_objects.h"

object_access_hook_type query_prev_object_access_hook = NULL;

/* While analyzing: only immutable pg_catalog functions may be evaluated (domain CHECKs of literals). */
void
query_analysis_access_hook(ObjectAccessType access, Oid classId, Oid objectId, int subId, void *arg)
{
	bool		harmless = false;
	HeapTuple	tup;

	if (query_prev_object_access_hook)
		query_prev_object_access_hook(access, classId, objectId, subId, arg);
	if (access != OAT_FUNCTION_EXECUTE)
		return;
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(objectId));
	if (HeapTupleIsValid(tup))
	{
		Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(tup);

		harmless = proc->pronamespace == PG_CATALOG_NAMESPACE && proc->provolatile == PROVOLATILE_IMMUTABLE;
		ReleaseSysCache(tup);
	}
	if (!harmless)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("sqlcoder refused the query: building one of its literals would call %s "
						"(a domain CHECK constraint) while the query is analyzed",
						format_procedure_qualified(objectId)),
				 errhint("Only immutable pg_catalog functions may run before the function policy; "
						 "write the value without a cast to that type.")));
}

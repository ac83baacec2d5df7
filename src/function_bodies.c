/*
 * src/function_bodies.c: what one function or type met by the query walk can
 * run, for sqlcoder_internal._query_objects(): an aggregate's support functions, the
 * bodies of SQL-language functions (analyzed and walked in turn; other
 * languages are reported opaque), and the CHECK constraints of domains the
 * query builds values of (also inside composites, arrays, ranges and
 * multiranges), and a range type's support functions.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_range.h"
#include "catalog/pg_type.h"
#include "executor/functions.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/parser.h"
#include "rewrite/rewriteHandler.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "function_policy.h"
#include "query_objects.h"

/* The transition, final, combine and (de)serial functions an aggregate runs. */
static void
add_aggregate_support(Collector *c, Oid aggfnoid)
{
	Oid			support[AGGREGATE_SUPPORT_FUNCTIONS];

	if (!aggregate_support_functions(aggfnoid, support))
		return;
	for (int i = 0; i < AGGREGATE_SUPPORT_FUNCTIONS; i++)
		if (OidIsValid(support[i]))
			query_add_function(c, support[i], NULL);
}

/*
 * A SQL-language function's body, analyzed and rewritten as the executor
 * would (its SET clauses applied, as its owner if SECURITY DEFINER); false
 * when it cannot be read (the function is then reported opaque).
 */
static bool
walk_sql_body(Collector *c, HeapTuple proctup, Node *call)
{
	Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(proctup);
	bool		isnull;
	Datum		body;
	Datum		config;
	List	   *queries = NIL;
	ListCell   *lc;
	int			save_nestlevel = -1;
	Oid			save_userid = InvalidOid;
	int			save_sec_context = 0;
	int			i;

	if (call == NULL)
		for (i = 0; i < proc->pronargs; i++)
			if (IsPolymorphicType(proc->proargtypes.values[i]))
				return false;	/* argument types unknown without the call */

	config = SysCacheGetAttr(PROCOID, proctup, Anum_pg_proc_proconfig, &isnull);
	if (!isnull)
	{
		save_nestlevel = NewGUCNestLevel();
		ProcessGUCArray(DatumGetArrayTypeP(config), superuser() ? PGC_SUSET : PGC_USERSET,
						PGC_S_SESSION, GUC_ACTION_SAVE);
	}
	if (proc->prosecdef)
	{
		GetUserIdAndSecContext(&save_userid, &save_sec_context);
		SetUserIdAndSecContext(proc->proowner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	}

	body = SysCacheGetAttr(PROCOID, proctup, Anum_pg_proc_prosqlbody, &isnull);
	if (!isnull)
	{
		/* BEGIN ATOMIC / RETURN: analyzed at CREATE time, rewritten now */
		Node	   *n = stringToNode(TextDatumGetCString(body));
		List	   *stored = IsA(n, List) ? linitial_node(List, castNode(List, n)) : list_make1(n);

		foreach(lc, stored)
		{
			Query	   *q = lfirst_node(Query, lc);

			AcquireRewriteLocks(q, true, false);
			queries = list_concat(queries, pg_rewrite_query(q));
		}
	}
	else
	{
		char	   *src = TextDatumGetCString(SysCacheGetAttr(PROCOID, proctup, Anum_pg_proc_prosrc,
															   &isnull));
		SQLFunctionParseInfoPtr pinfo = prepare_sql_fn_parse_info(proctup, call,
																   call ? exprInputCollation(call) : InvalidOid);

		foreach(lc, raw_parser(src, RAW_PARSE_DEFAULT))
			queries = list_concat(queries,
								  pg_analyze_and_rewrite_withcb(lfirst_node(RawStmt, lc), src,
																(ParserSetupHook) sql_fn_parser_setup,
																pinfo, NULL));
	}

	if (proc->prosecdef)
		SetUserIdAndSecContext(save_userid, save_sec_context);
	if (save_nestlevel >= 0)
		AtEOXact_GUC(true, save_nestlevel);

	foreach(lc, queries)
		if (lfirst_node(Query, lc)->commandType == CMD_UTILITY)
			return false;		/* a utility command: nothing to walk */
	query_walk_queries(queries, c);
	return true;
}

/*
 * walk_sql_body in a subtransaction: a body that does not analyze here (it
 * creates a table it then reads, say) makes the function opaque instead of
 * failing the whole check. A cancel, or a refusal of the analysis hook,
 * still ends the call.
 */
static bool
try_walk_sql_body(Collector *c, HeapTuple proctup, Node *call)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool walked = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		walked = walk_sql_body(c, proctup, call);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED || edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
			edata->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE ||
			edata->sqlerrcode == ERRCODE_STATEMENT_TOO_COMPLEX || edata->sqlerrcode == ERRCODE_OUT_OF_MEMORY)
			ReThrowError(edata);
		FreeErrorData(edata);
		walked = false;
	}
	PG_END_TRY();
	return walked;
}

void
query_add_function(Collector *c, Oid funcid, Node *call)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		opaque = false;

	if (!OidIsValid(funcid) || list_member_oid(c->functions, funcid))
		return;
	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	c->functions = lappend_oid(c->functions, funcid);

	tup = SearchSysCacheCopy1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", funcid);
	proc = (Form_pg_proc) GETSTRUCT(tup);

	if (proc->prokind == PROKIND_AGGREGATE)
		add_aggregate_support(c, funcid);
	else if (proc->prolang == SQLlanguageId)
		opaque = !try_walk_sql_body(c, tup, call);
	else if (proc->prolang != INTERNALlanguageId && proc->prolang != ClanguageId)
		opaque = true;			/* a procedural language: the body is code */
	query_add_type(c, proc->prorettype);
	if (opaque)
		c->opaque = lappend_oid(c->opaque, funcid);
	heap_freetuple(tup);
}

/* CHECK constraints of one domain, read from pg_constraint (not planned, not evaluated). */
static void
walk_domain_checks(Collector *c, Oid typid)
{
	Relation	rel = table_open(ConstraintRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *exprs = NIL;

	ScanKeyInit(&key, Anum_pg_constraint_contypid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(typid));
	scan = systable_beginscan(rel, ConstraintTypidIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		bin;

		if (((Form_pg_constraint) GETSTRUCT(tup))->contype != CONSTRAINT_CHECK)
			continue;
		bin = heap_getattr(tup, Anum_pg_constraint_conbin, RelationGetDescr(rel), &isnull);
		if (!isnull)
			exprs = lappend(exprs, stringToNode(TextDatumGetCString(bin)));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	query_walk_queries(exprs, c);
}

/*
 * A range type's canonical and subtype_diff functions run inside range
 * input and the planner's estimates, never as a call in the query; for a
 * multirange, those of its range.
 */
void
query_add_range_support(Collector *c, Oid typid)
{
	HeapTuple	tup;
	Oid			canonical,
				subdiff;

	if (get_typtype(typid) == TYPTYPE_MULTIRANGE)
		typid = get_multirange_range(typid);
	tup = SearchSysCache1(RANGETYPE, ObjectIdGetDatum(typid));
	if (!HeapTupleIsValid(tup))
		return;
	canonical = ((Form_pg_range) GETSTRUCT(tup))->rngcanonical;
	subdiff = ((Form_pg_range) GETSTRUCT(tup))->rngsubdiff;
	ReleaseSysCache(tup);
	query_add_function(c, canonical, NULL);
	query_add_function(c, subdiff, NULL);
}

/*
 * Types whose values the query builds can run code: a domain's CHECK
 * constraints (also inside composites and arrays built by record_in,
 * array_in, json_populate_record), a range's subtype.
 */
void
query_add_type(Collector *c, Oid typid)
{
	HeapTuple	tup;
	Form_pg_type typ;
	char		typtype;
	Oid			basetype,
				elemtype,
				relid;

	if (!OidIsValid(typid) || list_member_oid(c->types, typid))
		return;
	c->types = lappend_oid(c->types, typid);
	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	if (!HeapTupleIsValid(tup))
		return;
	typ = (Form_pg_type) GETSTRUCT(tup);
	typtype = typ->typtype;
	basetype = typ->typbasetype;
	elemtype = typ->typelem;
	relid = typ->typrelid;
	ReleaseSysCache(tup);

	if (typtype == TYPTYPE_DOMAIN)
	{
		walk_domain_checks(c, typid);
		query_add_type(c, basetype);
	}
	else if (typtype == TYPTYPE_COMPOSITE && OidIsValid(relid))
	{
		TupleDesc	desc = lookup_rowtype_tupdesc(typid, -1);
		List	   *attrs = NIL;
		ListCell   *lc;
		int			i;

		for (i = 0; i < desc->natts; i++)
			if (!TupleDescAttr(desc, i)->attisdropped)
				attrs = lappend_oid(attrs, TupleDescAttr(desc, i)->atttypid);
		ReleaseTupleDesc(desc);
		foreach(lc, attrs)
			query_add_type(c, lfirst_oid(lc));
	}
	else if (typtype == TYPTYPE_RANGE)
	{
		query_add_range_support(c, typid);
		query_add_type(c, get_range_subtype(typid));
	}
	else if (typtype == TYPTYPE_MULTIRANGE)
		query_add_type(c, get_multirange_range(typid));
	else if (OidIsValid(elemtype))
		query_add_type(c, elemtype);
}

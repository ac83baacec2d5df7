/*
 * src/query_objects.c: which functions and relations one SQL statement uses,
 * as PostgreSQL's own parse analysis resolved them (issue #10, the guard).
 *
 *   sqlcoder._query_objects(sql text) RETURNS TABLE (kind text, objid oid)
 *
 * The statement is parsed, analyzed and rewritten exactly as PostgreSQL would
 * before planning it, as the current role with its search_path: names in the
 * text decide nothing, every call is the pg_proc OID the analyzer chose
 * (a caller's public.lower() shadowing pg_catalog.lower(), an operator, a
 * cast). Nothing is planned or executed; parse analysis evaluates only the
 * input functions of literals' types (type I/O functions can be created only
 * by superusers), and the caller runs this inside a read-only, rolled-back
 * subtransaction anyway.
 *
 * Rows:
 *   'function'  every function the query can call: calls, operators' and
 *               casts' functions, aggregates with their transition and final
 *               functions, window functions, set-returning functions in FROM,
 *               TABLESAMPLE handlers, type I/O of casts through text and of
 *               the result columns, subscripting handlers, the comparison
 *               function of GREATEST/LEAST, sort and group operators, a
 *               foreign table's FDW handler, the functions of domain CHECK
 *               constraints the query casts to, and (followed recursively)
 *               the functions called by the bodies of SQL-language functions,
 *               views (expanded by the rewriter: a view's query runs in the
 *               caller's session whoever owns it) and row-level security
 *               policies.
 *   'opaque'    functions among those whose body this walk could not read:
 *               procedural languages (plpgsql, plpython3u, ...), SQL
 *               functions with polymorphic arguments called without a
 *               resolvable call, SQL bodies holding utility commands. Their
 *               volatility is only a label their owner chose.
 *   'relation'  every relation in a range table: tables, views (as named,
 *               and the relations inside them), foreign tables, relations in
 *               subqueries and CTEs.
 *
 * Errors: more or fewer than one statement -> 42601; anything but a plain
 * query (SELECT, VALUES, TABLE, WITH without data-modifying parts, and no
 * SELECT INTO) -> 25006.
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

PG_FUNCTION_INFO_V1(sqlcoder_query_objects);
PG_FUNCTION_INFO_V1(sqlcoder_function_facts);

typedef struct Collector
{
	List	   *functions;		/* OIDs, each once, in the order met */
	List	   *opaque;			/* subset of functions: bodies not read */
	List	   *relations;		/* pg_class OIDs */
	List	   *types;			/* types already looked at (domains, composites) */
} Collector;

static bool collect_walker(Node *node, Collector *c);
static object_access_hook_type prev_object_access_hook = NULL;

/* While analyzing: only immutable pg_catalog functions may be evaluated (domain CHECKs of literals). */
static void
analysis_access_hook(ObjectAccessType access, Oid classId, Oid objectId, int subId, void *arg)
{
	bool		harmless = false;
	HeapTuple	tup;

	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
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
static void add_function(Collector *c, Oid funcid, Node *call);
static void add_type(Collector *c, Oid typid);

static void
walk_queries(List *queries, Collector *c)
{
	ListCell   *lc;

	foreach(lc, queries)
		collect_walker((Node *) lfirst(lc), c);
}

static void
add_operator(Collector *c, Oid opno)
{
	if (OidIsValid(opno))
		add_function(c, get_opcode(opno), NULL);
}

/* The transition, final, combine and (de)serial functions an aggregate runs. */
static void
add_aggregate_support(Collector *c, Oid aggfnoid)
{
	HeapTuple	tup = SearchSysCache1(AGGFNOID, ObjectIdGetDatum(aggfnoid));
	Oid			support[8];
	int			i;

	if (!HeapTupleIsValid(tup))
		return;
	{
		Form_pg_aggregate agg = (Form_pg_aggregate) GETSTRUCT(tup);

		support[0] = agg->aggtransfn;
		support[1] = agg->aggfinalfn;
		support[2] = agg->aggcombinefn;
		support[3] = agg->aggserialfn;
		support[4] = agg->aggdeserialfn;
		support[5] = agg->aggmtransfn;
		support[6] = agg->aggminvtransfn;
		support[7] = agg->aggmfinalfn;
	}
	ReleaseSysCache(tup);
	for (i = 0; i < 8; i++)
		if (OidIsValid(support[i]))
			add_function(c, support[i], NULL);
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
	walk_queries(queries, c);
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

static void
add_function(Collector *c, Oid funcid, Node *call)
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
	add_type(c, proc->prorettype);
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
	walk_queries(exprs, c);
}

/*
 * Types whose values the query builds can run code: a domain's CHECK
 * constraints (also inside composites and arrays built by record_in,
 * array_in, json_populate_record), a range's subtype.
 */
static void
add_type(Collector *c, Oid typid)
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
		add_type(c, basetype);
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
			add_type(c, lfirst_oid(lc));
	}
	else if (typtype == TYPTYPE_RANGE)
		add_type(c, get_range_subtype(typid));
	else if (OidIsValid(elemtype))
		add_type(c, elemtype);
}

static void
add_sort_group(Collector *c, List *clauses)
{
	ListCell   *lc;

	foreach(lc, clauses)
	{
		SortGroupClause *sgc = lfirst_node(SortGroupClause, lc);

		add_operator(c, sgc->eqop);
		add_operator(c, sgc->sortop);
	}
}

/* Reading a foreign table runs its wrapper's handler: a connection, a file. */
static void
add_fdw_handler(Collector *c, Oid relid)
{
	ForeignServer *server = GetForeignServer(GetForeignServerIdByRelId(relid));

	add_function(c, GetForeignDataWrapper(server->fdwid)->fdwhandler, NULL);
}

static void
add_relation(Collector *c, RangeTblEntry *rte)
{
	if (rte->rtekind != RTE_RELATION || !OidIsValid(rte->relid))
		return;
	c->relations = list_append_unique_oid(c->relations, rte->relid);
	if (rte->relkind == RELKIND_FOREIGN_TABLE)
		add_fdw_handler(c, rte->relid);
	if (rte->inh && (rte->relkind == RELKIND_RELATION || rte->relkind == RELKIND_PARTITIONED_TABLE))
	{
		/* partitions and inheritance children are read too; the planner adds them later */
		ListCell   *lc;

		foreach(lc, find_all_inheritors(rte->relid, AccessShareLock, NULL))
			if (lfirst_oid(lc) != rte->relid && get_rel_relkind(lfirst_oid(lc)) == RELKIND_FOREIGN_TABLE)
				add_fdw_handler(c, lfirst_oid(lc));
	}
	if (rte->tablesample)
		add_function(c, rte->tablesample->tsmhandler, NULL);
}

static bool
collect_walker(Node *node, Collector *c)
{
	if (node == NULL)
		return false;
	check_stack_depth();

	switch (nodeTag(node))
	{
		case T_Query:
			{
				Query	   *q = (Query *) node;

				add_sort_group(c, q->sortClause);
				add_sort_group(c, q->groupClause);
				add_sort_group(c, q->distinctClause);
				return query_tree_walker(q, collect_walker, c, QTW_EXAMINE_RTES_BEFORE);
			}
		case T_RangeTblEntry:
			add_relation(c, (RangeTblEntry *) node);
			return false;		/* range_table_walker goes on into its parts */
		case T_FuncExpr:
			add_function(c, ((FuncExpr *) node)->funcid, node);
			add_type(c, ((FuncExpr *) node)->funcresulttype);
			break;
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
			set_opfuncid((OpExpr *) node);
			add_function(c, ((OpExpr *) node)->opfuncid, node);
			break;
		case T_ScalarArrayOpExpr:
			set_sa_opfuncid((ScalarArrayOpExpr *) node);
			add_function(c, ((ScalarArrayOpExpr *) node)->opfuncid, NULL);
			break;
		case T_RowCompareExpr:
			{
				ListCell   *lc;

				foreach(lc, ((RowCompareExpr *) node)->opnos)
					add_operator(c, lfirst_oid(lc));
			}
			break;
		case T_Aggref:
			add_function(c, ((Aggref *) node)->aggfnoid, NULL);
			break;
		case T_WindowFunc:
			add_function(c, ((WindowFunc *) node)->winfnoid, NULL);
			break;
		case T_MinMaxExpr:
			{
				TypeCacheEntry *tc = lookup_type_cache(((MinMaxExpr *) node)->minmaxtype,
													   TYPECACHE_CMP_PROC);

				add_function(c, tc->cmp_proc, NULL);
			}
			break;
		case T_CoerceViaIO:
			{
				CoerceViaIO *io = (CoerceViaIO *) node;
				Oid			func,
							ioparam;
				bool		varlena;

				getTypeOutputInfo(exprType((Node *) io->arg), &func, &varlena);
				add_function(c, func, NULL);
				getTypeInputInfo(io->resulttype, &func, &ioparam);
				add_function(c, func, NULL);
				add_type(c, io->resulttype);
			}
			break;
		case T_ArrayCoerceExpr:
			add_type(c, ((ArrayCoerceExpr *) node)->resulttype);
			break;
		case T_CoerceToDomain:
			add_type(c, ((CoerceToDomain *) node)->resulttype);
			break;
		case T_SubscriptingRef:
			add_function(c, get_typsubscript(((SubscriptingRef *) node)->refcontainertype, NULL), NULL);
			break;
		case T_TableSampleClause:
			add_function(c, ((TableSampleClause *) node)->tsmhandler, NULL);
			break;
		default:
			break;
	}
	return expression_tree_walker(node, collect_walker, c);
}

/* The result columns are printed as text: their types' output functions run. */
static void
add_output_functions(Collector *c, Query *q)
{
	ListCell   *lc;

	foreach(lc, q->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		Oid			func;
		bool		varlena;

		if (tle->resjunk)
			continue;
		getTypeOutputInfo(exprType((Node *) tle->expr), &func, &varlena);
		add_function(c, func, NULL);
	}
}

/* Syntax error positions point into the analyzed text, as SPI reports them. */
static void
query_error_callback(void *arg)
{
	const char *sql = (const char *) arg;
	int			position = geterrposition();

	if (position > 0)
	{
		errposition(0);
		internalerrposition(position);
		internalerrquery(sql);
	}
}

/*
 * Refuse anything but a plain query, naming what the text is ("this is a
 * DELETE"): the user sees what sqlcoder saw, not an executor's complaint.
 */
static void
refuse_statement(const char *what)
{
	bool		vowel = strchr("AEIOU", what[0]) != NULL;

	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("sqlcoder runs only a plain query: this is %s %s", vowel ? "an" : "a", what),
			 errhint("sqlcoder only reads: SELECT, VALUES, TABLE, or WITH without INSERT/UPDATE/DELETE. "
					 "Run other statements yourself, outside sqlcoder.")));
}

static Query *
analyze_one_plain_query(const char *sql)
{
	List	   *raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	RawStmt    *stmt;
	List	   *queries;
	Query	   *q;

	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("sqlcoder runs exactly one SQL statement; this text holds %d", list_length(raw)),
				 errhint("Remove everything but one query.")));
	stmt = linitial_node(RawStmt, raw);
	if (IsA(stmt->stmt, SelectStmt) && ((SelectStmt *) stmt->stmt)->intoClause != NULL)
		refuse_statement("SELECT INTO");
	if (!IsA(stmt->stmt, SelectStmt))
		refuse_statement(GetCommandTagName(CreateCommandTag(stmt->stmt)));
	queries = pg_analyze_and_rewrite_fixedparams(stmt, sql, NULL, 0, NULL);
	q = list_length(queries) == 1 ? linitial_node(Query, queries) : NULL;
	if (q != NULL && q->hasModifyingCTE)
		refuse_statement("WITH holding INSERT, UPDATE or DELETE");
	if (q == NULL || q->commandType != CMD_SELECT || q->utilityStmt != NULL)
		refuse_statement("query a rule rewrote into something else");
	return q;
}

static void
emit(ReturnSetInfo *rsinfo, const char *kind, List *oids)
{
	ListCell   *lc;

	foreach(lc, oids)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(kind);
		values[1] = ObjectIdGetDatum(lfirst_oid(lc));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

Datum
sqlcoder_query_objects(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Collector	c = {NIL, NIL, NIL, NIL};
	ErrorContextCallback errcallback;
	char	   *sql;
	Query	   *volatile q = NULL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the SQL must not be NULL")));
	InitMaterializedSRF(fcinfo, 0);
	sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	errcallback.callback = query_error_callback;
	errcallback.arg = sql;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	prev_object_access_hook = object_access_hook;
	object_access_hook = analysis_access_hook;
	PG_TRY();
	{
		q = analyze_one_plain_query(sql);
		add_output_functions(&c, q);
		collect_walker((Node *) q, &c);
	}
	PG_FINALLY();
	{
		object_access_hook = prev_object_access_hook;
	}
	PG_END_TRY();
	error_context_stack = errcallback.previous;

	emit(rsinfo, "function", c.functions);
	emit(rsinfo, "opaque", c.opaque);
	emit(rsinfo, "relation", c.relations);
	return (Datum) 0;
}

/*
 * sqlcoder._function_facts(functions oid[]) RETURNS TABLE (oid, qualified,
 * arguments, schema, name, volatility, language, owner_superuser, extension):
 * what the guard's policy needs about each function, from the syscache (a
 * query over pg_proc, pg_depend and pg_roles was replanned at every call).
 * OIDs that name no function are left out.
 */
Datum
sqlcoder_function_facts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *array = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *elems;
	bool	   *elemnulls;
	int			n,
				i;

	InitMaterializedSRF(fcinfo, 0);
	deconstruct_array(array, OIDOID, sizeof(Oid), true, TYPALIGN_INT, &elems, &elemnulls, &n);
	for (i = 0; i < n; i++)
	{
		Oid			funcid = DatumGetObjectId(elems[i]);
		HeapTuple	tup;
		Form_pg_proc proc;
		StringInfoData args;
		char		volatility[2];
		char	   *schema;
		Oid			extension;
		Datum		values[9];
		bool		nulls[9] = {false, false, false, false, false, false, false, false, false};
		int			a;

		CHECK_FOR_INTERRUPTS();
		if (elemnulls[i])
			continue;
		tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
		if (!HeapTupleIsValid(tup))
			continue;
		proc = (Form_pg_proc) GETSTRUCT(tup);
		schema = get_namespace_name(proc->pronamespace);
		initStringInfo(&args);
		for (a = 0; a < proc->pronargs; a++)
			appendStringInfo(&args, "%s%s", a > 0 ? ", " : "", format_type_be(proc->proargtypes.values[a]));
		volatility[0] = proc->provolatile;
		volatility[1] = '\0';
		values[0] = ObjectIdGetDatum(funcid);
		values[1] = CStringGetTextDatum(quote_qualified_identifier(schema, NameStr(proc->proname)));
		values[2] = CStringGetTextDatum(args.data);
		values[3] = CStringGetTextDatum(schema);
		values[4] = CStringGetTextDatum(NameStr(proc->proname));
		values[5] = CStringGetTextDatum(volatility);
		values[6] = CStringGetTextDatum(get_language_name(proc->prolang, false));
		values[7] = BoolGetDatum(superuser_arg(proc->proowner));
		extension = getExtensionOfObject(ProcedureRelationId, funcid);
		if (OidIsValid(extension))
			values[8] = CStringGetTextDatum(get_extension_name(extension));
		else
			nulls[8] = true;
		ReleaseSysCache(tup);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * src/query_walker.c: the walk over an analyzed and rewritten query for
 * sqlcoder_internal._query_objects(): every relation in its range tables, and every
 * function its expressions, operators, casts, sort and group clauses,
 * TABLESAMPLE, subscripts and result columns can call (what a function or a
 * type then runs is function_bodies.c's).
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "query_objects.h"

void
query_walk_queries(List *queries, Collector *c)
{
	ListCell   *lc;

	foreach(lc, queries)
		query_collect_walker((Node *) lfirst(lc), c);
}

static void
add_operator(Collector *c, Oid opno)
{
	if (OidIsValid(opno))
		query_add_function(c, get_opcode(opno), NULL);
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

	query_add_function(c, GetForeignDataWrapper(server->fdwid)->fdwhandler, NULL);
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
		query_add_function(c, rte->tablesample->tsmhandler, NULL);
}

bool
query_collect_walker(Node *node, Collector *c)
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
				return query_tree_walker(q, query_collect_walker, c, QTW_EXAMINE_RTES_BEFORE);
			}
		case T_RangeTblEntry:
			add_relation(c, (RangeTblEntry *) node);
			return false;		/* range_table_walker goes on into its parts */
		case T_Var:
		case T_Const:
			/* a range column or value: the planner's estimates run its subtype_diff */
			if (type_is_range(exprType(node)) || type_is_multirange(exprType(node)))
				query_add_range_support(c, exprType(node));
			break;
		case T_FuncExpr:
			query_add_function(c, ((FuncExpr *) node)->funcid, node);
			query_add_type(c, ((FuncExpr *) node)->funcresulttype);
			break;
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
			set_opfuncid((OpExpr *) node);
			query_add_function(c, ((OpExpr *) node)->opfuncid, node);
			break;
		case T_ScalarArrayOpExpr:
			set_sa_opfuncid((ScalarArrayOpExpr *) node);
			query_add_function(c, ((ScalarArrayOpExpr *) node)->opfuncid, NULL);
			break;
		case T_RowCompareExpr:
			{
				ListCell   *lc;

				foreach(lc, ((RowCompareExpr *) node)->opnos)
					add_operator(c, lfirst_oid(lc));
			}
			break;
		case T_Aggref:
			query_add_function(c, ((Aggref *) node)->aggfnoid, NULL);
			break;
		case T_WindowFunc:
			query_add_function(c, ((WindowFunc *) node)->winfnoid, NULL);
			break;
		case T_MinMaxExpr:
			{
				TypeCacheEntry *tc = lookup_type_cache(((MinMaxExpr *) node)->minmaxtype,
													   TYPECACHE_CMP_PROC);

				query_add_function(c, tc->cmp_proc, NULL);
			}
			break;
		case T_CoerceViaIO:
			{
				CoerceViaIO *io = (CoerceViaIO *) node;
				Oid			func,
							ioparam;
				bool		varlena;

				getTypeOutputInfo(exprType((Node *) io->arg), &func, &varlena);
				query_add_function(c, func, NULL);
				getTypeInputInfo(io->resulttype, &func, &ioparam);
				query_add_function(c, func, NULL);
				query_add_type(c, io->resulttype);
			}
			break;
		case T_ArrayCoerceExpr:
			query_add_type(c, ((ArrayCoerceExpr *) node)->resulttype);
			break;
		case T_CoerceToDomain:
			query_add_type(c, ((CoerceToDomain *) node)->resulttype);
			break;
		case T_SubscriptingRef:
			query_add_function(c, get_typsubscript(((SubscriptingRef *) node)->refcontainertype, NULL), NULL);
			break;
		case T_TableSampleClause:
			query_add_function(c, ((TableSampleClause *) node)->tsmhandler, NULL);
			break;
		case T_TableFunc:

			/*
			 * XMLTABLE (PostgreSQL 15's only table function) evaluates its
			 * row and column paths with libxml2's XPath engine, no function
			 * call in sight: it is reported as xpath(text, xml, text[]),
			 * the function with that engine, so the policy's verdict on
			 * xpath is XMLTABLE's too.
			 */
			query_add_function(c, F_XPATH_TEXT_XML__TEXT, NULL);
			break;
		default:
			break;
	}
	return expression_tree_walker(node, query_collect_walker, c);
}

/* The result columns are printed as text: their types' output functions run. */
void
query_add_output_functions(Collector *c, Query *q)
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
		query_add_function(c, func, NULL);
	}
}

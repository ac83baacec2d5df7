/*
 * src/query_objects.c: which functions and relations one SQL statement uses,
 * as PostgreSQL's own parse analysis resolved them (the guard).
 *
 *   sqlcoder_internal._query_objects(sql text) RETURNS TABLE (kind text, objid oid)
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
 * The walk is in query_walker.c (the analyzed query) and function_bodies.c
 * (what a called function or a built type can run). While it analyzes, the
 * function policy is armed (policy_hook.c): parse analysis can evaluate a
 * literal's domain CHECK constraints, which can call any function.
 *
 * Errors the Python side tells apart carry the constraint name
 * sqlcoder_one_statement or sqlcoder_plain_query (schema sqlcoder).
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "tcop/cmdtag.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/tuplestore.h"

#include "policy_hook.h"
#include "query_objects.h"

PG_FUNCTION_INFO_V1(sqlcoder_query_objects);

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
					 "Run other statements yourself, outside sqlcoder."),
			 err_generic_string(PG_DIAG_SCHEMA_NAME, "sqlcoder"),
			 err_generic_string(PG_DIAG_CONSTRAINT_NAME, "sqlcoder_plain_query")));
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
				 errhint("Remove everything but one query."),
				 err_generic_string(PG_DIAG_SCHEMA_NAME, "sqlcoder"),
				 err_generic_string(PG_DIAG_CONSTRAINT_NAME, "sqlcoder_one_statement")));
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
	const char *previous;

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
	previous = policy_hook_arm("analyzing the query");
	PG_TRY();
	{
		q = analyze_one_plain_query(sql);
		query_add_output_functions(&c, q);
		query_collect_walker((Node *) q, &c);
	}
	PG_FINALLY();
	{
		policy_hook_restore(previous);
	}
	PG_END_TRY();
	error_context_stack = errcallback.previous;

	emit(rsinfo, "function", c.functions);
	emit(rsinfo, "opaque", c.opaque);
	emit(rsinfo, "relation", c.relations);
	return (Datum) 0;
}

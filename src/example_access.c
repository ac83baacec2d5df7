/*
 * src/example_access.c: may the current role run a golden example's query?
 *
 *   sqlcoder_internal._example_permitted(sql text, search_path name[]) RETURNS boolean
 *
 * PostgreSQL's own answer, without running anything: the SQL is parsed,
 * analyzed and rewritten as the current role under the example's search_path
 * (the path its relations were found under), and every range table of the
 * result (the query's, its subqueries', CTEs' and sublinks', and those of the
 * views the rewriter expanded, which carry the view owner as checkAsUser) goes
 * through the executor's own permission check, ExecCheckRTPerms (PostgreSQL
 * 16: ExecCheckPermissions): table privileges, column privileges of exactly
 * the columns the query selects, and any ExecutorCheckPerms_hook (sepgsql).
 * So a role with column grants sees an example that reads only its columns,
 * and never one that reads another. EXECUTE on every function, operator,
 * aggregate and window function the tree calls is checked as the executor
 * checks it when the plan starts: as the current user, inside views too.
 *
 * false, never an error, when the query no longer analyzes (a dropped table
 * or column, a schema the role may not use), is not one plain SELECT, or is
 * longer than MAX_EXAMPLE_BYTES: the row-level security policy on
 * sqlcoder.examples calls this for every row it shows. A cancel or a
 * statement_timeout still ends the call. The analysis runs in an internal
 * subtransaction, rolled back, so its locks and the search_path it set go.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

/* Stored examples are at most 20,000 characters (examples.py); anyone may call this with more. */
#define MAX_EXAMPLE_BYTES (256 * 1024)

PG_FUNCTION_INFO_V1(sqlcoder_example_permitted);

typedef struct PermitContext
{
	bool		permitted;
} PermitContext;

static bool permitted_walker(Node *node, PermitContext *ctx);

/* One Query's own range table, then (through the walker) every Query inside it. */
static bool
check_query(Query *query, PermitContext *ctx)
{
	check_stack_depth();
#if PG_VERSION_NUM >= 160000
	if (!ExecCheckPermissions(query->rtable, query->rteperminfos, false))
#else
	if (!ExecCheckRTPerms(query->rtable, false))
#endif
	{
		ctx->permitted = false;
		return true;			/* stop: one refusal is enough */
	}
	return query_tree_walker(query, permitted_walker, ctx, 0);
}

/* The function a node calls, whose EXECUTE privilege the executor checks as the current user. */
static Oid
called_function(Node *node)
{
	switch (nodeTag(node))
	{
		case T_FuncExpr:
			return ((FuncExpr *) node)->funcid;
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
			set_opfuncid((OpExpr *) node);
			return ((OpExpr *) node)->opfuncid;
		case T_ScalarArrayOpExpr:
			set_sa_opfuncid((ScalarArrayOpExpr *) node);
			return ((ScalarArrayOpExpr *) node)->opfuncid;
		case T_Aggref:
			return ((Aggref *) node)->aggfnoid;
		case T_WindowFunc:
			return ((WindowFunc *) node)->winfnoid;
		default:
			return InvalidOid;
	}
}

static bool
permitted_walker(Node *node, PermitContext *ctx)
{
	Oid			fn;

	if (node == NULL)
		return false;
	if (IsA(node, Query))
		return check_query((Query *) node, ctx);
	/* Functions in a view's query are called with the caller's privileges, as PostgreSQL does. */
	fn = called_function(node);
#if PG_VERSION_NUM >= 160000
	if (OidIsValid(fn) && object_aclcheck(ProcedureRelationId, fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
#else
	if (OidIsValid(fn) && pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
#endif
	{
		ctx->permitted = false;
		return true;
	}
	/* RTE subqueries, CTEs and sublinks reach here as Query nodes. */
	return expression_tree_walker(node, permitted_walker, ctx);
}

/* The search_path value of a name[] (each element quoted), as the caller's path is set elsewhere. */
static char *
path_value(ArrayType *path)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	StringInfoData buf;

	deconstruct_array(path, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &elems, &nulls, &n);
	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, quote_identifier(NameStr(*DatumGetName(elems[i]))));
	}
	return buf.data;
}

static bool
analyze_and_check(const char *sql, const char *path)
{
	List	   *raw;
	RawStmt    *stmt;
	List	   *queries;
	PermitContext ctx = {true};
	ListCell   *lc;

	(void) set_config_option("search_path", path, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	if (list_length(raw) != 1)
		return false;
	stmt = linitial_node(RawStmt, raw);
	if (!IsA(stmt->stmt, SelectStmt) || ((SelectStmt *) stmt->stmt)->intoClause != NULL)
		return false;
#if PG_VERSION_NUM >= 150000
	queries = pg_analyze_and_rewrite_fixedparams(stmt, sql, NULL, 0, NULL);
#else
	queries = pg_analyze_and_rewrite(stmt, sql, NULL, 0, NULL);
#endif
	foreach(lc, queries)
	{
		Query	   *query = lfirst_node(Query, lc);

		if (query->commandType != CMD_SELECT || query->hasModifyingCTE)
			return false;
		(void) check_query(query, &ctx);
		if (!ctx.permitted)
			return false;
	}
	return true;
}

/*
 * Errors that end the call rather than say "not permitted": a cancel, a
 * timeout, running out of memory, the server shutting down.
 */
static bool
must_rethrow(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_QUERY_CANCELED ||
		sqlerrcode == ERRCODE_OUT_OF_MEMORY ||
		sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
		sqlerrcode == ERRCODE_CRASH_SHUTDOWN ||
		sqlerrcode == ERRCODE_CANNOT_CONNECT_NOW ||
		sqlerrcode == ERRCODE_STATEMENT_TOO_COMPLEX ||
		ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_INSUFFICIENT_RESOURCES ||
		ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION;
}

/* sqlcoder_internal._example_permitted(sql text, search_path name[]) RETURNS boolean, STRICT */
Datum
sqlcoder_example_permitted(PG_FUNCTION_ARGS)
{
	text	   *sql_text = PG_GETARG_TEXT_PP(0);
	ArrayType  *path = PG_GETARG_ARRAYTYPE_P(1);
	MemoryContext caller_cxt = CurrentMemoryContext;
	ResourceOwner caller_owner = CurrentResourceOwner;
	char	   *sql;
	char	   *path_text;
	bool		permitted = false;

	if (VARSIZE_ANY_EXHDR(sql_text) > MAX_EXAMPLE_BYTES)
		PG_RETURN_BOOL(false);
	if (ARR_NDIM(path) > 1)
		PG_RETURN_BOOL(false);
	sql = text_to_cstring(sql_text);
	path_text = path_value(path);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller_cxt);
	PG_TRY();
	{
		permitted = analyze_and_check(sql, path_text);
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_cxt);
		CurrentResourceOwner = caller_owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_cxt);
		CurrentResourceOwner = caller_owner;
		if (must_rethrow(edata->sqlerrcode))
			ReThrowError(edata);
		FreeErrorData(edata);
		permitted = false;
	}
	PG_END_TRY();
	PG_RETURN_BOOL(permitted);
}

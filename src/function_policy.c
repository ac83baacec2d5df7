/*
 * src/function_policy.c: the guard's function policy, decided in C for each
 * function PostgreSQL is about to call while a guarded call is armed
 * (policy_hook.c), in the order python/sqlcoder/policy.py documents:
 *
 *   1. in schema sqlcoder or sqlcoder_internal or of the sqlcoder extension: refused;
 *   2. on the DBA's denied_functions: refused;
 *   3. on the DBA's allowed_functions: allowed;
 *   4. on the shipped deny list (pg_catalog names, whole extensions): refused;
 *   5. on the shipped allow list: allowed although volatile;
 *   6. volatile: refused;
 *   7. procedural-language code owned by a role that is not a superuser:
 *      refused (its volatility is a label it chose);
 *   8. anything else: allowed.
 * An aggregate is decided by its own entry and then by each support
 * function it runs (transition, final, combine, (de)serial).
 *
 * The lists (rules 2-5) are resolved to OIDs by the Python side and handed
 * over by sqlcoder_internal._guard_policy(); they last until the subtransaction that
 * received them ends, so the guard's rolled-back subtransaction takes them
 * away with everything else. Without lists, rules 1 and 6-8 still apply.
 * Verdicts are cached per function until the lists change or the
 * transaction ends, so a function called per row is looked up once.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "function_policy.h"

PG_FUNCTION_INFO_V1(sqlcoder_guard_policy);

/* Higher wins when one OID is on several lists (rule order 2 > 3 > 4 > 5). */
typedef enum Listed
{
	LISTED_HARMLESS = 1,
	LISTED_SHIPPED_REFUSED,
	LISTED_DBA_ALLOWED,
	LISTED_DBA_DENIED
} Listed;

typedef struct ListedEntry
{
	Oid			funcid;			/* hash key */
	Listed		kind;
	const char *reason;			/* LISTED_SHIPPED_REFUSED, LISTED_DBA_DENIED */
} ListedEntry;

typedef struct Verdict
{
	Oid			funcid;			/* hash key */
	bool		refused;
	Oid			culprit;		/* the function to name: funcid, or an aggregate's support function */
	const char *reason;
} Verdict;

typedef struct DeniedExtension
{
	Oid			extension;
	const char *reason;
} DeniedExtension;

static const char *const SELF_REASON = "sqlcoder does not call itself from generated SQL";
static const char *const DBA_DENIED_REASON = "a superuser denied it (denied_functions)";
static const char *const VOLATILE_REASON = "it is volatile: it may change something outside the query";

static MemoryContext policy_cxt = NULL; /* the handed lists and the verdicts */
static HTAB *listed = NULL;
static DeniedExtension *denied_extensions = NULL;
static int	n_denied_extensions = 0;
static HTAB *verdicts = NULL;
static Oid	sqlcoder_namespace = InvalidOid;
static Oid	sqlcoder_internal_namespace = InvalidOid;
static Oid	sqlcoder_extension = InvalidOid;
static SubTransactionId lists_subid = InvalidSubTransactionId;
static bool callbacks_registered = false;

void
function_policy_forget(void)
{
	if (policy_cxt != NULL)
		MemoryContextReset(policy_cxt);
	listed = NULL;
	verdicts = NULL;
	denied_extensions = NULL;
	n_denied_extensions = 0;
	lists_subid = InvalidSubTransactionId;
}

static void
policy_xact_callback(XactEvent event, void *arg)
{
	function_policy_forget();	/* every end of a transaction: lists and cached verdicts go */
}

/* The lists move to the parent when their subtransaction commits, and go when it rolls back. */
static void
policy_subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	if (lists_subid == InvalidSubTransactionId || mySubid != lists_subid)
		return;
	if (event == SUBXACT_EVENT_COMMIT_SUB)
		lists_subid = parentSubid;
	else if (event == SUBXACT_EVENT_ABORT_SUB)
		function_policy_forget();
}

static void
ensure_context(void)
{
	if (policy_cxt == NULL)
		policy_cxt = AllocSetContextCreate(TopMemoryContext, "sqlcoder function policy", ALLOCSET_SMALL_SIZES);
	if (!callbacks_registered)
	{
		RegisterXactCallback(policy_xact_callback, NULL);
		RegisterSubXactCallback(policy_subxact_callback, NULL);
		callbacks_registered = true;
	}
}

static HTAB *
oid_table(const char *name, Size entrysize)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = entrysize;
	ctl.hcxt = policy_cxt;
	return hash_create(name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static void
deconstruct(ArrayType *array, Oid elemtype, Datum **elems, bool **nulls, int *n)
{
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sqlcoder: the function policy's lists must be one-dimensional arrays")));
	if (elemtype == OIDOID)
		deconstruct_array(array, OIDOID, sizeof(Oid), true, TYPALIGN_INT, elems, nulls, n);
	else
		deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, elems, nulls, n);
}

static void
add_listed(ArrayType *oids, ArrayType *reasons, Listed kind, const char *fixed_reason)
{
	Datum	   *elems,
			   *reason_elems = NULL;
	bool	   *nulls,
			   *reason_nulls = NULL;
	int			n,
				n_reasons = 0;

	deconstruct(oids, OIDOID, &elems, &nulls, &n);
	if (reasons != NULL)
	{
		deconstruct(reasons, TEXTOID, &reason_elems, &reason_nulls, &n_reasons);
		if (n_reasons != n)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("sqlcoder: the function policy needs one reason per refused function (%d for %d)",
							n_reasons, n)));
	}
	for (int i = 0; i < n; i++)
	{
		Oid			funcid;
		ListedEntry *entry;
		bool		found;

		if (nulls[i])
			continue;
		funcid = DatumGetObjectId(elems[i]);
		entry = hash_search(listed, &funcid, HASH_ENTER, &found);
		if (found && entry->kind > kind)
			continue;
		entry->kind = kind;
		if (reasons != NULL && !reason_nulls[i])
			entry->reason = MemoryContextStrdup(policy_cxt, TextDatumGetCString(reason_elems[i]));
		else
			entry->reason = fixed_reason;
	}
}

/*
 * sqlcoder_internal._guard_policy(allowed oid[], denied oid[], refused oid[], refused_reasons text[],
 *                        harmless oid[], extensions text[], extension_reasons text[]) RETURNS void
 *
 * The DBA's lists (allowed, denied) and the shipped ones (refused with a
 * reason each, harmless, and whole extensions by name), resolved by the
 * Python side; they replace any lists handed before and last until the
 * calling subtransaction ends.
 */
Datum
sqlcoder_guard_policy(PG_FUNCTION_ARGS)
{
	MemoryContext old;
	Datum	   *names,
			   *reasons;
	bool	   *name_nulls,
			   *reason_nulls;
	int			n_names,
				n_reasons;

	for (int i = 0; i < 7; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("sqlcoder: the function policy's lists must not be NULL")));
	function_policy_forget();
	ensure_context();
	old = MemoryContextSwitchTo(policy_cxt);
	PG_TRY();
	{
		listed = oid_table("sqlcoder listed functions", sizeof(ListedEntry));
		add_listed(PG_GETARG_ARRAYTYPE_P(4), NULL, LISTED_HARMLESS, NULL);
		add_listed(PG_GETARG_ARRAYTYPE_P(2), PG_GETARG_ARRAYTYPE_P(3), LISTED_SHIPPED_REFUSED, NULL);
		add_listed(PG_GETARG_ARRAYTYPE_P(0), NULL, LISTED_DBA_ALLOWED, NULL);
		add_listed(PG_GETARG_ARRAYTYPE_P(1), NULL, LISTED_DBA_DENIED, DBA_DENIED_REASON);

		deconstruct(PG_GETARG_ARRAYTYPE_P(5), TEXTOID, &names, &name_nulls, &n_names);
		deconstruct(PG_GETARG_ARRAYTYPE_P(6), TEXTOID, &reasons, &reason_nulls, &n_reasons);
		if (n_names != n_reasons)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("sqlcoder: the function policy needs one reason per extension (%d for %d)",
							n_reasons, n_names)));
		denied_extensions = palloc0(sizeof(DeniedExtension) * Max(n_names, 1));
		for (int i = 0; i < n_names; i++)
		{
			Oid			extension;

			if (name_nulls[i] || reason_nulls[i])
				continue;
			extension = get_extension_oid(TextDatumGetCString(names[i]), true);
			if (!OidIsValid(extension))
				continue;		/* not installed here */
			denied_extensions[n_denied_extensions].extension = extension;
			denied_extensions[n_denied_extensions].reason = TextDatumGetCString(reasons[i]);
			n_denied_extensions++;
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		function_policy_forget();
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	lists_subid = GetCurrentSubTransactionId();
	PG_RETURN_VOID();
}

static const char *
extension_reason(Oid extension)
{
	for (int i = 0; i < n_denied_extensions; i++)
		if (denied_extensions[i].extension == extension)
			return denied_extensions[i].reason;
	return NULL;
}

/* Rules 1-8 for one function, without looking into an aggregate's support functions. */
static const char *
own_refusal(Oid funcid, Form_pg_proc proc, bool *allowed_outright)
{
	ListedEntry *entry = listed ? hash_search(listed, &funcid, HASH_FIND, NULL) : NULL;
	Oid			extension = InvalidOid;
	const char *reason;

	*allowed_outright = false;
	/* objects made after initdb, extensions' included, have OIDs from FirstNormalObjectId on */
	if (funcid >= FirstNormalObjectId)
		extension = getExtensionOfObject(ProcedureRelationId, funcid);
	if (proc->pronamespace == sqlcoder_namespace || proc->pronamespace == sqlcoder_internal_namespace ||
		(OidIsValid(extension) && extension == sqlcoder_extension))
		return SELF_REASON;
	if (entry && entry->kind == LISTED_DBA_DENIED)
		return entry->reason;
	if (entry && entry->kind == LISTED_DBA_ALLOWED)
	{
		*allowed_outright = true;
		return NULL;
	}
	if (entry && entry->kind == LISTED_SHIPPED_REFUSED)
		return entry->reason;
	if (OidIsValid(extension) && (reason = extension_reason(extension)) != NULL)
		return reason;
	if (entry && entry->kind == LISTED_HARMLESS)
		return NULL;
	if (proc->provolatile == PROVOLATILE_VOLATILE)
		return VOLATILE_REASON;
	if (proc->prolang != INTERNALlanguageId && proc->prolang != ClanguageId &&
		proc->prolang != SQLlanguageId && !superuser_arg(proc->proowner))
		return psprintf("its body is %s code owned by a role that is not a superuser: "
						"its volatility is a label, not a guarantee",
						get_language_name(proc->prolang, false));
	return NULL;
}

static void decide(Verdict *v);

/*
 * The support functions an aggregate runs (InvalidOid where it has none);
 * false when aggfnoid is no aggregate. The walk and the policy both use it.
 */
bool
aggregate_support_functions(Oid aggfnoid, Oid support[AGGREGATE_SUPPORT_FUNCTIONS])
{
	HeapTuple	tup = SearchSysCache1(AGGFNOID, ObjectIdGetDatum(aggfnoid));
	Form_pg_aggregate agg;

	if (!HeapTupleIsValid(tup))
		return false;
	agg = (Form_pg_aggregate) GETSTRUCT(tup);
	support[0] = agg->aggtransfn;
	support[1] = agg->aggfinalfn;
	support[2] = agg->aggcombinefn;
	support[3] = agg->aggserialfn;
	support[4] = agg->aggdeserialfn;
	support[5] = agg->aggmtransfn;
	support[6] = agg->aggminvtransfn;
	support[7] = agg->aggmfinalfn;
	ReleaseSysCache(tup);
	return true;
}

/* The support functions an aggregate runs, each decided in its own right. */
static void
decide_aggregate_support(Verdict *v)
{
	Oid			support[AGGREGATE_SUPPORT_FUNCTIONS];

	if (!aggregate_support_functions(v->funcid, support))
		return;
	for (int i = 0; i < AGGREGATE_SUPPORT_FUNCTIONS && !v->refused; i++)
	{
		Verdict		s = {support[i], false, support[i], NULL};

		if (!OidIsValid(support[i]) || support[i] == v->funcid)
			continue;
		decide(&s);
		if (s.refused)
		{
			v->refused = true;
			v->culprit = s.culprit;
			v->reason = s.reason;
		}
	}
}

static void
decide(Verdict *v)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(v->funcid));
	Form_pg_proc proc;
	bool		allowed_outright;
	bool		aggregate;
	const char *reason;

	v->refused = false;
	v->culprit = v->funcid;
	v->reason = NULL;
	if (!HeapTupleIsValid(tup))
		return;					/* dropped meanwhile: PostgreSQL itself will complain */
	proc = (Form_pg_proc) GETSTRUCT(tup);
	reason = own_refusal(v->funcid, proc, &allowed_outright);
	aggregate = proc->prokind == PROKIND_AGGREGATE;
	ReleaseSysCache(tup);
	if (reason != NULL)
	{
		v->refused = true;
		v->reason = MemoryContextStrdup(policy_cxt, reason);
		return;
	}
	if (aggregate)
		decide_aggregate_support(v);
}

static Verdict *
verdict_of(Oid funcid)
{
	Verdict    *v;
	bool		found;

	ensure_context();
	if (verdicts == NULL)
	{
		verdicts = oid_table("sqlcoder function verdicts", sizeof(Verdict));
		sqlcoder_namespace = get_namespace_oid("sqlcoder", true);
		sqlcoder_internal_namespace = get_namespace_oid("sqlcoder_internal", true);
		sqlcoder_extension = get_extension_oid("sqlcoder", true);
	}
	v = hash_search(verdicts, &funcid, HASH_FIND, NULL);
	if (v != NULL)
		return v;
	{
		Verdict		computed = {funcid, false, funcid, NULL};

		decide(&computed);		/* may look up catalogs: no half-made entry is left behind */
		v = hash_search(verdicts, &funcid, HASH_ENTER, &found);
		*v = computed;
	}
	return v;
}

bool
function_policy_refuses(Oid funcid)
{
	return verdict_of(funcid)->refused;
}

bool
function_policy_is_planted_code(Oid funcid)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	bool		planted = false;

	if (HeapTupleIsValid(tup))
	{
		Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(tup);

		planted = proc->prolang != INTERNALlanguageId && proc->prolang != ClanguageId &&
			proc->prolang != SQLlanguageId && !superuser_arg(proc->proowner);
		ReleaseSysCache(tup);
	}
	return planted;
}

/* schema.name(argument types), as policy.py and sqlcoder.allow_function spell it. */
static char *
function_signature(Oid funcid)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	Form_pg_proc proc;
	StringInfoData buf;

	if (!HeapTupleIsValid(tup))
		return psprintf("function %u", funcid);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	initStringInfo(&buf);
	appendStringInfo(&buf, "%s(", quote_qualified_identifier(get_namespace_name(proc->pronamespace),
															  NameStr(proc->proname)));
	for (int a = 0; a < proc->pronargs; a++)
		appendStringInfo(&buf, "%s%s", a > 0 ? ", " : "", format_type_be(proc->proargtypes.values[a]));
	appendStringInfoChar(&buf, ')');
	ReleaseSysCache(tup);
	return buf.data;
}

static char *
sql_literal_body(const char *text)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const char *p = text; *p; p++)
	{
		if (*p == '\'')
			appendStringInfoChar(&buf, '\'');
		appendStringInfoChar(&buf, *p);
	}
	return buf.data;
}

void
function_policy_enforce(Oid funcid, const char *phase)
{
	Verdict    *v = verdict_of(funcid);
	char	   *signature;
	bool		self;

	if (!v->refused)
		return;
	signature = function_signature(v->culprit);
	self = strcmp(v->reason, SELF_REASON) == 0;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("sqlcoder refused the query: it calls %s, and %s", signature, v->reason),
			 errdetail("PostgreSQL was about to call it while %s.", phase),
			 self ? errhint("Calls into sqlcoder's own schemas are always refused; run sqlcoder functions yourself.")
			 : errhint("A superuser can allow it: SELECT sqlcoder.allow_function('%s'); "
					   "see docs/security.md for what that permits.", sql_literal_body(signature)),
			 err_generic_string(PG_DIAG_SCHEMA_NAME, "sqlcoder"),
			 err_generic_string(PG_DIAG_CONSTRAINT_NAME, "sqlcoder_function_policy")));
}

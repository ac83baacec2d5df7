/*
 * src/function_facts.c: sqlcoder_internal._function_facts(), what the guard's policy
 * needs about each function the query walk found.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/dependency.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(sqlcoder_function_facts);

/*
 * sqlcoder_internal._function_facts(functions oid[]) RETURNS TABLE (oid, qualified,
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

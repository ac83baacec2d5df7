/*
 * src/history_role.c: the safety check on sqlcoder_history_writer, the role
 * history rows are written as (by the history writer of each database).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "utils/catcache.h"
#include "utils/syscache.h"

#include "history.h"

/*
 * The writer role's OID, or InvalidOid (with *why) when it is missing or has
 * more than INSERT on the history table could need: an attribute, a password,
 * a member or a membership. Checked at every write, so a role created or
 * changed by someone else before or after CREATE EXTENSION is never used.
 */
Oid
history_writer_role(const char **why)
{
	HeapTuple	tup;
	Form_pg_authid form;
	Oid			oid;
	bool		isnull;
	CatCList   *members;
	CatCList   *memberships;
	bool		bad;

	tup = SearchSysCache1(AUTHNAME, CStringGetDatum(HISTORY_WRITER_ROLE));
	if (!HeapTupleIsValid(tup))
	{
		*why = "role " HISTORY_WRITER_ROLE " does not exist";
		return InvalidOid;
	}
	form = (Form_pg_authid) GETSTRUCT(tup);
	oid = form->oid;
	(void) SysCacheGetAttr(AUTHNAME, tup, Anum_pg_authid_rolpassword, &isnull);
	bad = form->rolsuper || form->rolcreaterole || form->rolcreatedb ||
		form->rolreplication || form->rolbypassrls || !isnull;
	ReleaseSysCache(tup);
	if (bad)
	{
		*why = "role " HISTORY_WRITER_ROLE " has an attribute or a password it must not have";
		return InvalidOid;
	}
	members = SearchSysCacheList1(AUTHMEMROLEMEM, ObjectIdGetDatum(oid));
	memberships = SearchSysCacheList1(AUTHMEMMEMROLE, ObjectIdGetDatum(oid));
	bad = members->n_members > 0 || memberships->n_members > 0;
	ReleaseSysCacheList(members);
	ReleaseSysCacheList(memberships);
	if (bad)
	{
		*why = "role " HISTORY_WRITER_ROLE " has members or is a member of another role";
		return InvalidOid;
	}
	return oid;
}


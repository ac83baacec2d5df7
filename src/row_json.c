/*
 * src/row_json.c: one result row as the JSON text row_to_json(row) gives,
 * measured before it is built, built once at its exact length.
 *
 * Why not row_to_json of the whole row: it copies the row into a composite,
 * renders each value to a C string, grows its buffer by doubling and copies
 * that into a text: about six times a large row at once. Here text, varchar
 * and bpchar values (and domains over them) are escaped straight from the
 * datum, exactly as row_to_json's escape_json does, and json values copied as
 * they are (row_to_json copies json_out's text, the stored text); every other
 * column goes through row_to_json of a one-column row with the same name and
 * type, whose text is {"name":value}, so its part is row_to_json's own. The
 * caller learns the exact length first and refuses a row that does not fit
 * before its JSON exists.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "result.h"

typedef enum ColumnKind
{
	COLUMN_TEXT,				/* escaped from the datum: text, varchar, bpchar */
	COLUMN_VERBATIM,			/* copied as stored: json */
	COLUMN_OTHER				/* row_to_json of a one-column row */
} ColumnKind;

typedef struct Column
{
	ColumnKind	kind;
	bool		dropped;
	bool		at_least_raw;	/* its JSON is never shorter than its raw bytes */
	char	   *key;			/* "name": as row_to_json writes it */
	int			key_len;
	TupleDesc	one;			/* COLUMN_OTHER: a row type of this column alone */
	/* the row being measured: */
	const char *part;			/* the value's bytes (escaped on output if escape) */
	int64		part_len;
	bool		escape;
} Column;

struct RowJson
{
	int			natts;
	Column	   *columns;
	int64		length;			/* of the measured row's JSON text */
};

/* How many bytes escape_json writes for each byte of a string. */
static uint8 escaped_width[256];

static void
init_escaped_width(void)
{
	int			c;

	for (c = 0; c < 256; c++)
		escaped_width[c] = c < ' ' ? 6 : 1; /* \u00XX */
	escaped_width['\b'] = escaped_width['\f'] = escaped_width['\n'] = 2;
	escaped_width['\r'] = escaped_width['\t'] = escaped_width['"'] = escaped_width['\\'] = 2;
}

/*
 * This loop and write_escaped's are over one value (at most 1 GB, about a
 * second): no interrupt check, a cancel acts at the next row.
 */
static int64
escaped_length(const char *s, int64 n)
{
	int64		length = 2;		/* the quotes */
	int64		i;

	for (i = 0; i < n; i++)
		length += escaped_width[(unsigned char) s[i]];
	return length;
}

/* escape_json(), for a string of known length (a text never holds a NUL). */
static char *
write_escaped(char *out, const char *s, int64 n)
{
	static const char hex[] = "0123456789abcdef";
	int64		i;

	*out++ = '"';
	for (i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		switch (c)
		{
			case '\b':
				*out++ = '\\';
				*out++ = 'b';
				break;
			case '\f':
				*out++ = '\\';
				*out++ = 'f';
				break;
			case '\n':
				*out++ = '\\';
				*out++ = 'n';
				break;
			case '\r':
				*out++ = '\\';
				*out++ = 'r';
				break;
			case '\t':
				*out++ = '\\';
				*out++ = 't';
				break;
			case '"':
			case '\\':
				*out++ = '\\';
				*out++ = (char) c;
				break;
			default:
				if (c < ' ')
				{
					memcpy(out, "\\u00", 4);
					out[4] = hex[c >> 4];
					out[5] = hex[c & 15];
					out += 6;
				}
				else
					*out++ = (char) c;
				break;
		}
	}
	*out++ = '"';
	return out;
}

/*
 * The key of each column: its name, or for a name an earlier column already
 * has, name_2 (name_3, ...: the first that is no column's name and no key yet).
 * A json object with a key twice is valid json, but every driver, JSON.parse
 * and jsonb keep one value of the two: SELECT c.id, o.id would lose a column.
 */
static char **
distinct_keys(TupleDesc desc)
{
	char	  **keys = palloc0(sizeof(char *) * Max(desc->natts, 1));

	for (int i = 0; i < desc->natts; i++)
	{
		const char *name = NameStr(TupleDescAttr(desc, i)->attname);
		bool		taken = false;

		if (TupleDescAttr(desc, i)->attisdropped)
			continue;
		for (int j = 0; j < i && !taken; j++)
			taken = keys[j] != NULL && strcmp(keys[j], name) == 0;
		if (!taken)
		{
			keys[i] = pstrdup(name);
			continue;
		}
		for (int n = 2;; n++)
		{
			char		suffix[16];
			int			keep;
			char	   *candidate;
			bool		clash = false;

			/* A key stays a valid column name (the one-column row below is built with it). */
			snprintf(suffix, sizeof(suffix), "_%d", n);
			keep = pg_mbcliplen(name, strlen(name), NAMEDATALEN - 1 - (int) strlen(suffix));
			candidate = psprintf("%.*s%s", keep, name, suffix);

			for (int j = 0; j < desc->natts && !clash; j++)
				clash = (!TupleDescAttr(desc, j)->attisdropped &&
						 strcmp(NameStr(TupleDescAttr(desc, j)->attname), candidate) == 0) ||
					(j < i && keys[j] != NULL && strcmp(keys[j], candidate) == 0);
			if (!clash)
			{
				keys[i] = candidate;
				break;
			}
			pfree(candidate);
			CHECK_FOR_INTERRUPTS();
		}
	}
	return keys;
}

RowJson *
row_json_start(TupleDesc desc)
{
	RowJson    *rj = palloc0(sizeof(RowJson));
	char	  **keys = distinct_keys(desc);
	int			i;

	if (escaped_width['"'] == 0)
		init_escaped_width();
	rj->natts = desc->natts;
	rj->columns = palloc0(sizeof(Column) * Max(desc->natts, 1));
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Column	   *col = &rj->columns[i];
		StringInfoData key;
		Oid			base;

		col->dropped = att->attisdropped;
		if (col->dropped)
			continue;
		base = getBaseType(att->atttypid);	/* row_to_json looks through domains too */
		switch (base)
		{
			case TEXTOID:
			case VARCHAROID:
			case BPCHAROID:
				col->kind = COLUMN_TEXT;
				break;
			case JSONOID:
				col->kind = COLUMN_VERBATIM;
				break;
			default:
				col->kind = COLUMN_OTHER;
				break;
		}

		/*
		 * Not xml (its output may drop the XML declaration), jsonb or numeric
		 * (their text may be shorter than their binary form), nor arrays
		 * (element headers and padding); bytea writes \x and two hex digits a
		 * byte, or with bytea_output = escape one to four characters a byte.
		 */
		col->at_least_raw = col->kind != COLUMN_OTHER || base == BYTEAOID;
		initStringInfo(&key);
		escape_json(&key, keys[i]);
		appendStringInfoChar(&key, ':');
		col->key = key.data;
		col->key_len = key.len;
		if (col->kind == COLUMN_OTHER)
		{
			col->one = CreateTemplateTupleDesc(1);
			TupleDescInitEntry(col->one, (AttrNumber) 1, keys[i], att->atttypid,
							   att->atttypmod, att->attndims);
			col->one = BlessTupleDesc(col->one);	/* row_to_json looks the row type up */
		}
	}
	return rj;
}

int64
row_json_lower_bound(RowJson *rj, TupleTableSlot *slot)
{
	int64		bound = 0;
	int			i;

	slot_getallattrs(slot);
	for (i = 0; i < rj->natts; i++)
		if (rj->columns[i].at_least_raw && !slot->tts_isnull[i])
			bound += (int64) (toast_raw_datum_size(slot->tts_values[i]) - VARHDRSZ);
	return bound;
}

/* A COLUMN_OTHER value's part: row_to_json of the one-column row is {"name":value}. */
static void
measure_other(Column *col, Datum value)
{
	bool		isnull = false;
	HeapTuple	tuple = heap_form_tuple(col->one, &value, &isnull);
	text	   *json = DatumGetTextPP(DirectFunctionCall1(row_to_json, HeapTupleGetDatum(tuple)));
	const char *data = VARDATA_ANY(json);
	int64		len = VARSIZE_ANY_EXHDR(json);

	heap_freetuple(tuple);
	if (len < col->key_len + 2 || data[0] != '{' || data[len - 1] != '}' ||
		memcmp(data + 1, col->key, col->key_len) != 0)
		elog(ERROR, "sqlcoder: row_to_json wrote an unexpected column text");
	col->part = data + 1 + col->key_len;
	col->part_len = len - 2 - col->key_len;
	col->escape = false;
}

int64
row_json_measure(RowJson *rj, TupleTableSlot *slot)
{
	int64		length = 2;		/* { } */
	bool		first = true;
	int			i;

	slot_getallattrs(slot);
	for (i = 0; i < rj->natts; i++)
	{
		Column	   *col = &rj->columns[i];

		if (col->dropped)
			continue;
		length += col->key_len + (first ? 0 : 1);
		first = false;
		if (slot->tts_isnull[i])
		{
			col->part = "null";
			col->part_len = 4;
			col->escape = false;
		}
		else if (col->kind == COLUMN_OTHER)
			measure_other(col, slot->tts_values[i]);
		else
		{
			text	   *value = DatumGetTextPP(slot->tts_values[i]);	/* fetched if TOASTed */

			col->part = VARDATA_ANY(value);
			col->part_len = VARSIZE_ANY_EXHDR(value);
			col->escape = col->kind == COLUMN_TEXT;
		}
		length += col->escape ? escaped_length(col->part, col->part_len) : col->part_len;
	}
	rj->length = length;
	return length;
}

Datum
row_json_build(RowJson *rj)
{
	char	   *json;
	char	   *out;
	bool		first = true;
	int			i;

	if (rj->length > (int64) (MaxAllocSize - VARHDRSZ))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("sqlcoder: one row's JSON text is longer than 1 GB")));
	json = palloc(VARHDRSZ + rj->length);
	out = json + VARHDRSZ;
	*out++ = '{';
	for (i = 0; i < rj->natts; i++)
	{
		Column	   *col = &rj->columns[i];

		if (col->dropped)
			continue;
		if (!first)
			*out++ = ',';
		first = false;
		memcpy(out, col->key, col->key_len);
		out += col->key_len;
		if (col->escape)
			out = write_escaped(out, col->part, col->part_len);
		else
		{
			memcpy(out, col->part, col->part_len);
			out += col->part_len;
		}
	}
	*out++ = '}';
	if (out - json != VARHDRSZ + rj->length)
		elog(ERROR, "sqlcoder: a row's JSON text is not the length measured");
	SET_VARSIZE(json, VARHDRSZ + rj->length);
	return PointerGetDatum(json);
}

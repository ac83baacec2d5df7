/*
 * src/row_json.h: one result row as the JSON text row_to_json gives it,
 * measured before it is built (src/row_json.c).
 */
#ifndef SQLCODER_ROW_JSON_H
#define SQLCODER_ROW_JSON_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "executor/tuptable.h"

typedef struct RowJson RowJson;

/* For rows of desc; allocated in the current memory context, which must outlive the rows. */
extern RowJson *row_json_start(TupleDesc desc);

/* A lower bound of the row's JSON length from its datums as they are: nothing detoasted or copied. */
extern int64 row_json_lower_bound(RowJson *rj, TupleTableSlot *slot);

/* The exact length of the row's JSON text; its parts are kept, in the current context, for row_json_build. */
extern int64 row_json_measure(RowJson *rj, TupleTableSlot *slot);

/* The measured row as one json datum of exactly that length, in the current context. */
extern Datum row_json_build(RowJson *rj);

#endif

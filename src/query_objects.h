/*
 * src/query_objects.h: declarations shared by the files behind
 * sqlcoder_internal._query_objects() (query_objects.c, query_walker.c,
 * function_bodies.c); private to this library.
 */
#ifndef SQLCODER_QUERY_OBJECTS_H
#define SQLCODER_QUERY_OBJECTS_H

#include "postgres.h"

#include "nodes/parsenodes.h"

typedef struct Collector
{
	List	   *functions;		/* OIDs, each once, in the order met */
	List	   *opaque;			/* subset of functions: bodies not read */
	List	   *relations;		/* pg_class OIDs */
	List	   *types;			/* types already looked at (domains, composites) */
} Collector;

/* query_walker.c */
extern bool query_collect_walker(Node *node, Collector *c);
extern void query_walk_queries(List *queries, Collector *c);
extern void query_add_output_functions(Collector *c, Query *q);

/* function_bodies.c */
extern void query_add_function(Collector *c, Oid funcid, Node *call);
extern void query_add_type(Collector *c, Oid typid);
extern void query_add_range_support(Collector *c, Oid typid);

#endif							/* SQLCODER_QUERY_OBJECTS_H */

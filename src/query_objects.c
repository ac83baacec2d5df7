/* src/query_objects.c: see the section of issue work that fills it in. */
#include "postgres.h"

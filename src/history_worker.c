/* src/history_worker.c: see the section of issue work that fills it in. */
#include "postgres.h"

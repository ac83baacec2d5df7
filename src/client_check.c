/* src/client_check.c: see the section of issue work that fills it in. */
#include "postgres.h"

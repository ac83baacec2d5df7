/*
 * src/invoke.h: the entry point sqlcoder_internal._invoke (src/invoke.c) and the
 * token that tells its internal functions they run inside it.
 */
#ifndef SQLCODER_INVOKE_H
#define SQLCODER_INVOKE_H

#include "postgres.h"

/* Whether token is the one the innermost sqlcoder_internal._invoke in progress handed to the package. */
extern bool invoke_token_is_current(const text *token);

#endif							/* SQLCODER_INVOKE_H */

/*
 * src/decoding_option.h: sqlcoder.constrained_decoding, the superuser-only
 * per-call override of the constrained_decoding setting (decoding_option.c);
 * private to this library.
 */
#ifndef SQLCODER_DECODING_OPTION_H
#define SQLCODER_DECODING_OPTION_H

/* Define the option (once, when the library is loaded). */
extern void decoding_option_define(void);

#endif							/* SQLCODER_DECODING_OPTION_H */

/* src/sqlcoder.h: what src/sqlcoder.c's _PG_init calls in the other files. */
#ifndef SQLCODER_H
#define SQLCODER_H

extern void sqlcoder_define_decoding_option(void);

#endif

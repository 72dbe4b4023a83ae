// CQriHiredis: hiredis 0.14 as a RESP codec only. Qri never lets hiredis touch a socket
// (no redisConnect*, no redisCommand*): it formats commands and parses replies, and the
// bytes travel over Qri's own loop and TLS layer.
#ifndef CQRI_HIREDIS_SHIM_H
#define CQRI_HIREDIS_SHIM_H

// <hiredis/read.h> alone lacks redisReply and redisReaderCreate, which live here.
#include <hiredis/hiredis.h>

// `errstr` is a char[128], which Swift imports as a tuple.
static inline const char *cqri_reader_errstr(const redisReader *r) { return r->errstr; }
// `element` is a pointer to pointers; indexing it in C keeps the Swift side simple.
static inline const redisReply *cqri_reply_element(const redisReply *r, size_t i) { return r->element[i]; }
// 0.14's reader frees and restarts an empty buffer larger than maxbuf at each feed; with
// pipelined replies that is churn for nothing.
static inline void cqri_reader_keep_buffer(redisReader *r) { r->maxbuf = 0; }

#endif

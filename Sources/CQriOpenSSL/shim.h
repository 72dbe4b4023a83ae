// CQriOpenSSL: the system OpenSSL 3 as Swift sees it.
//
// Swift imports OpenSSL's functions directly, but not its function-like macros nor the
// SSL_OP_* constants (defined as 64-bit shifts in 3.0). Each wrapper below exists because
// the thing it wraps is such a macro; all carry the cqri_ prefix.
#ifndef CQRI_OPENSSL_SHIM_H
#define CQRI_OPENSSL_SHIM_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/asn1.h>
#include <openssl/ocsp.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/core_names.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline long cqri_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
static inline long cqri_SSL_set_mode(SSL *ssl, long mode) { return SSL_set_mode(ssl, mode); }
static inline int cqri_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int v) { return (int)SSL_CTX_set_min_proto_version(ctx, v); }
static inline int cqri_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int v) { return (int)SSL_CTX_set_max_proto_version(ctx, v); }
static inline int cqri_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) { return (int)SSL_CTX_set1_groups_list(ctx, list); }
static inline long cqri_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_session_cache_mode(ctx, mode); }
static inline long cqri_SSL_CTX_sess_set_cache_size(SSL_CTX *ctx, long size) { return SSL_CTX_sess_set_cache_size(ctx, size); }
static inline void cqri_OPENSSL_free(void *p) { OPENSSL_free(p); }
// OPENSSL_memdup is a macro (it passes __FILE__/__LINE__ to CRYPTO_memdup).
static inline void *cqri_OPENSSL_memdup(const void *p, size_t n) { return OPENSSL_memdup(p, n); }

static inline uint64_t cqri_SSL_OP_NO_RENEGOTIATION(void) { return SSL_OP_NO_RENEGOTIATION; }
static inline uint64_t cqri_SSL_OP_NO_COMPRESSION(void) { return SSL_OP_NO_COMPRESSION; }
static inline uint64_t cqri_SSL_OP_IGNORE_UNEXPECTED_EOF(void) { return SSL_OP_IGNORE_UNEXPECTED_EOF; }
static inline uint64_t cqri_SSL_OP_NO_SSLv3(void) { return SSL_OP_NO_SSLv3; }
static inline uint64_t cqri_SSL_OP_CIPHER_SERVER_PREFERENCE(void) { return SSL_OP_CIPHER_SERVER_PREFERENCE; }

static inline int cqri_ERR_GET_REASON(unsigned long e) { return ERR_GET_REASON(e); }
static inline int cqri_SSL_R_UNEXPECTED_EOF_WHILE_READING(void) { return SSL_R_UNEXPECTED_EOF_WHILE_READING; }

/// ALPN selection: picks "http/1.1" from the client's list, or fails the handshake when the
/// client offers ALPN without it. Kept in C because it walks a length-prefixed wire list.
static inline int cqri_alpn_select_http11(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                          const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl; (void)arg;
    static const unsigned char proto[] = "http/1.1";
    unsigned int i = 0;
    while (i < inlen) {
        unsigned int len = in[i];
        if (i + 1 + len > inlen) break;
        if (len == 8 && memcmp(in + i + 1, proto, 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static inline void cqri_SSL_CTX_use_http11_alpn(SSL_CTX *ctx) {
    SSL_CTX_set_alpn_select_cb(ctx, cqri_alpn_select_http11, NULL);
}

/// SSL_get_ex_new_index is a macro over CRYPTO_get_ex_new_index.
static inline int cqri_SSL_get_ex_new_index(void) {
    return SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/// ALPN for a context shared by the public and the admin listener: an `SSL` whose ex_data at
/// index `arg` is set (the public listener's, when HTTP/2 is on) selects `h2` when the client
/// offers it, else `http/1.1` (server order wins); any other selects `http/1.1` only.
static inline int cqri_alpn_select_h2_or_http11(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                                const unsigned char *in, unsigned int inlen, void *arg) {
    int index = (int)(intptr_t)arg;
    if (SSL_get_ex_data(ssl, index) != NULL) {
        unsigned int i = 0;
        while (i < inlen) {
            unsigned int len = in[i];
            if (i + 1 + len > inlen) break;
            if (len == 2 && in[i + 1] == 'h' && in[i + 2] == '2') {
                *out = in + i + 1;
                *outlen = 2;
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + len;
        }
    }
    return cqri_alpn_select_http11(ssl, out, outlen, in, inlen, NULL);
}

static inline void cqri_SSL_CTX_use_h2_alpn(SSL_CTX *ctx, int index) {
    SSL_CTX_set_alpn_select_cb(ctx, cqri_alpn_select_h2_or_http11, (void *)(intptr_t)index);
}

/// Marks an `SSL` as one that may select `h2` (see cqri_alpn_select_h2_or_http11).
static inline void cqri_SSL_offer_h2(SSL *ssl, int index) {
    SSL_set_ex_data(ssl, index, (void *)1);
}

/// Ticket resumptions: OpenSSL tells whether a handshake resumed (SSL_session_reused) but not
/// whether from a TLS 1.2 session id or from a ticket. This decrypt callback of
/// SSL_CTX_set_session_ticket_cb(3) marks the SSL (app data, ex_data index 0, unused
/// elsewhere) when a ticket decrypted; the caller checks SSL_session_reused too, since a
/// decrypted ticket may still be turned down (TLS 1.3 binder, cipher or context mismatch).
/// OpenSSL calls it for EMPTY, NO_DECRYPT, SUCCESS and SUCCESS_RENEW only; each returns what
/// OpenSSL does without a callback: use the session (renewing when asked), or ignore the
/// ticket and issue a new one. Kept in C because it is a callback with C types.
static inline SSL_TICKET_RETURN cqri_decrypt_ticket_mark(SSL *s, SSL_SESSION *ss, const unsigned char *keyname,
                                                         size_t keyname_len, SSL_TICKET_STATUS status, void *arg) {
    (void)ss; (void)keyname; (void)keyname_len; (void)arg;
    switch (status) {
    case SSL_TICKET_SUCCESS:
        SSL_set_app_data(s, (void *)1);
        return SSL_TICKET_RETURN_USE;
    case SSL_TICKET_SUCCESS_RENEW:
        SSL_set_app_data(s, (void *)1);
        return SSL_TICKET_RETURN_USE_RENEW;
    case SSL_TICKET_EMPTY:
    case SSL_TICKET_NO_DECRYPT:
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    case SSL_TICKET_NONE:
        return SSL_TICKET_RETURN_IGNORE;
    default:                                   /* SSL_TICKET_FATAL_ERR_* */
        return SSL_TICKET_RETURN_ABORT;
    }
}

static inline int cqri_SSL_CTX_mark_ticket_resumptions(SSL_CTX *ctx) {
    return SSL_CTX_set_session_ticket_cb(ctx, NULL, cqri_decrypt_ticket_mark, NULL);
}

/// Whether `cqri_decrypt_ticket_mark` marked this SSL (SSL_get_app_data is a macro).
static inline int cqri_SSL_decrypted_ticket(const SSL *s) { return SSL_get_app_data(s) != NULL; }

// OCSP stapling: the status callback's setters and the response setter are macros over
// SSL_CTX_callback_ctrl / SSL_CTX_ctrl / SSL_ctrl.
static inline long cqri_SSL_CTX_set_tlsext_status_cb(SSL_CTX *ctx, int (*cb)(SSL *, void *)) {
    return SSL_CTX_set_tlsext_status_cb(ctx, cb);
}
static inline long cqri_SSL_CTX_set_tlsext_status_arg(SSL_CTX *ctx, void *arg) { return SSL_CTX_set_tlsext_status_arg(ctx, arg); }
/// Takes ownership of `resp`, which must come from OPENSSL_malloc (OpenSSL frees it).
static inline long cqri_SSL_set_tlsext_status_ocsp_resp(SSL *ssl, unsigned char *resp, long len) {
    return SSL_set_tlsext_status_ocsp_resp(ssl, resp, len);
}
// SSL_CTX_get0_chain_certs is a macro over SSL_CTX_ctrl; the sk_X509_* accessors are macros.
static inline STACK_OF(X509) *cqri_SSL_CTX_get0_chain_certs(SSL_CTX *ctx) {
    STACK_OF(X509) *chain = NULL;
    return SSL_CTX_get0_chain_certs(ctx, &chain) == 1 ? chain : NULL;
}
static inline int cqri_sk_X509_num(const STACK_OF(X509) *sk) { return sk_X509_num(sk); }
static inline X509 *cqri_sk_X509_value(const STACK_OF(X509) *sk, int i) { return sk_X509_value(sk, i); }

// Client side (qri-bench): SNI is a macro over SSL_ctrl.
static inline int cqri_SSL_set_tlsext_host_name(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }

/// Session-ticket keys shared by every SSL_CTX of the process (a certificate reload makes a
/// new context but keeps the keys): nginx's 80-byte format, 16 name + 32 HMAC-SHA256 key +
/// 32 AES-256-CBC key, newest first. The first encrypts; all decrypt. Loop threads read the
/// keys in the callback while a reload or rotation replaces them: a read-write lock guards
/// them. Kept in C because the callback has C types and runs on OpenSSL's stack.
#define CQRI_TICKET_KEY_BYTES 80
#define CQRI_MAX_TICKET_KEYS 16
typedef struct {
    pthread_rwlock_t lock;
    int count;
    unsigned char keys[CQRI_MAX_TICKET_KEYS][CQRI_TICKET_KEY_BYTES];
} cqri_ticket_keys;

static inline cqri_ticket_keys *cqri_ticket_keys_new(void) {
    cqri_ticket_keys *k = calloc(1, sizeof *k);
    if (k && pthread_rwlock_init(&k->lock, NULL) != 0) { free(k); return NULL; }
    return k;
}

static inline void cqri_ticket_keys_free(cqri_ticket_keys *k) {
    if (!k) return;
    pthread_rwlock_destroy(&k->lock);
    OPENSSL_cleanse(k->keys, sizeof k->keys);
    free(k);
}

/// Replaces the keys with `count` keys of 80 bytes each from `bytes`; returns 0, or -1 when
/// count is out of range (the old keys stay).
static inline int cqri_ticket_keys_set(cqri_ticket_keys *k, const unsigned char *bytes, int count) {
    if (count < 1 || count > CQRI_MAX_TICKET_KEYS) return -1;
    pthread_rwlock_wrlock(&k->lock);
    OPENSSL_cleanse(k->keys, sizeof k->keys);
    memcpy(k->keys, bytes, (size_t)count * CQRI_TICKET_KEY_BYTES);
    k->count = count;
    pthread_rwlock_unlock(&k->lock);
    return 0;
}

/// The SSL_CTX_set_tlsext_ticket_key_evp_cb(3) callback: encrypts with the first key,
/// decrypts with the key the ticket names (1 for the first key; 2, "renew", for an older
/// one, so the client gets a ticket under the current key; 0, a full handshake, when none
/// matches). The keys come from the context's app data.
static inline int cqri_ticket_key_cb(SSL *s, unsigned char key_name[16], unsigned char *iv,
                                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc) {
    cqri_ticket_keys *k = (cqri_ticket_keys *)SSL_CTX_get_app_data(SSL_get_SSL_CTX(s));
    unsigned char key[CQRI_TICKET_KEY_BYTES];
    int found = -1;
    if (!k) return -1;
    pthread_rwlock_rdlock(&k->lock);
    if (enc) {
        if (k->count > 0) { memcpy(key, k->keys[0], sizeof key); found = 0; }
    } else {
        for (int i = 0; i < k->count; i++) {
            if (memcmp(k->keys[i], key_name, 16) == 0) { memcpy(key, k->keys[i], sizeof key); found = i; break; }
        }
    }
    pthread_rwlock_unlock(&k->lock);
    if (found < 0) return enc ? -1 : 0;
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key + 16, 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    int ok;
    if (enc) {
        memcpy(key_name, key, 16);
        ok = RAND_bytes(iv, 16) == 1
            && EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key + 48, iv) == 1
            && EVP_MAC_CTX_set_params(hctx, params) == 1;
    } else {
        ok = EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key + 48, iv) == 1
            && EVP_MAC_CTX_set_params(hctx, params) == 1;
    }
    OPENSSL_cleanse(key, sizeof key);
    if (!ok) return -1;
    return enc ? 1 : (found == 0 ? 1 : 2);
}

/// Makes `ctx` encrypt and decrypt tickets with `keys` (its app data; the caller keeps the
/// keys alive as long as the context). SSL_CTX_set_tlsext_ticket_key_evp_cb and
/// SSL_CTX_set_app_data are macros.
static inline int cqri_SSL_CTX_use_ticket_keys(SSL_CTX *ctx, cqri_ticket_keys *keys) {
    if (SSL_CTX_set_app_data(ctx, keys) != 1) return 0;
    return (int)SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, cqri_ticket_key_cb);
}

#endif

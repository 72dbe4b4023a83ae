#ifndef CQRI_NGHTTP2_SHIM_H
#define CQRI_NGHTTP2_SHIM_H

// nghttp2 (Debian's libnghttp2-dev 1.52, with the rapid-reset and CONTINUATION fixes): the
// HTTP/2 framing, HPACK and flow control of the public listener's h2 connections, driven
// from Qri's own loop with memory I/O. Macros Swift cannot import get wrappers here.
#include <nghttp2/nghttp2.h>

/// NGHTTP2_INITIAL_WINDOW_SIZE is a cast macro ((1 << 16) - 1).
static inline int32_t cqri_nghttp2_initial_window_size(void) { return NGHTTP2_INITIAL_WINDOW_SIZE; }

#endif

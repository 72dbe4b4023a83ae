// CQriSystem: the Linux system calls Glibc's Swift overlay does not expose (epoll, eventfd,
// signalfd, accept4) and a few helpers that read errno-sensitive results in C, so that no
// Swift code runs between a call and its errno.
#ifndef CQRI_SYSTEM_H
#define CQRI_SYSTEM_H

#include <stdint.h>
#include <stddef.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/socket.h>

#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#endif

/// An event reported by the poller: user data and readiness as plain integers.
typedef struct {
    uint64_t data;
    uint32_t events;
} cqri_event;

int cqri_has_epoll(void);
int cqri_epoll_create(void);
/// op: 0 add, 1 modify, 2 delete. events: bit 0 readable, bit 1 writable.
int cqri_epoll_ctl(int epfd, int op, int fd, uint32_t interest, uint64_t data);
/// Returns the number of events, or -1 with errno. Readiness folded into bit 0 readable,
/// bit 1 writable, bit 2 hang-up/error.
int cqri_epoll_wait(int epfd, cqri_event *events, int max, int timeout_ms);

int cqri_eventfd(void);
int cqri_signalfd(const int *signals, int count);
/// Blocks the given signals for the calling thread (and threads it starts later).
int cqri_block_signals(const int *signals, int count);
/// Reads one signal number from a signalfd, or -1.
int cqri_signalfd_read(int fd);

/// Accepts one connection, non-blocking and close-on-exec. When `address` is not NULL it
/// receives the peer's address bytes (4 for IPv4, 16 for IPv6) and `*family` 4 or 6 (0 for
/// another family or none).
int cqri_accept(int fd, uint8_t *address, int *family);
int cqri_errno(void);
int cqri_set_nonblocking(int fd);
int cqri_set_int_option(int fd, int level, int name, int value);
ssize_t cqri_send(int fd, const void *buf, size_t len);
void cqri_ignore_sigpipe(void);
/// Raises the soft open-file limit to the hard one; returns the new soft limit.
long cqri_raise_nofile_limit(void);
/// TCP keep-alive on a connected socket: first probe after `idle` s of silence, then every
/// `interval` s, dropped after `count` unanswered probes. Returns 0 or -1.
int cqri_set_keepalive(int fd, int idle, int interval, int count);
/// Writes the peer's address of a connected socket as "host:port" ("[v6]:port") into `out`;
/// returns 0, or -1 when it has none (the peer already left).
int cqri_peer_name(int fd, char *out, size_t size);
/// A descriptor held in reserve (on /dev/null), to be closed when accept(2) fails with EMFILE.
int cqri_open_spare(void);
/// Gives free heap pages back to the system (glibc malloc_trim); no-op elsewhere.
void cqri_malloc_trim(void);
/// Starts a non-blocking TCP connection to the literal IPv4 or IPv6 address `ip`; returns the
/// descriptor (connect may be in progress: wait for writability, then `cqri_socket_error`),
/// or -1 with errno.
int cqri_connect(const char *ip, int port);
/// The pending error of a socket (SO_ERROR): 0 once a non-blocking connect succeeded.
int cqri_socket_error(int fd);
/// Resolves `host` to one literal address in `out` (IPv4 preferred); 0 or -1. Blocking:
/// for start-up only, never on a loop thread.
int cqri_resolve(const char *host, char *out, size_t size);
/// Monotonic clock in nanoseconds.
uint64_t cqri_monotonic_ns(void);
/// Wall clock in microseconds since the Unix epoch.
uint64_t cqri_wall_us(void);

#endif

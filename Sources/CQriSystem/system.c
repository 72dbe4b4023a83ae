#include "CQriSystem.h"
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/// The address bytes and family (4, 6, or 0) of an accepted peer.
static void cqri_copy_peer(const struct sockaddr_storage *ss, uint8_t *address, int *family) {
    if (ss->ss_family == AF_INET) {
        memcpy(address, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        *family = 4;
    } else if (ss->ss_family == AF_INET6) {
        memcpy(address, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
        *family = 6;
    } else {
        *family = 0;
    }
}

#ifdef __linux__
int cqri_has_epoll(void) { return 1; }

int cqri_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int cqri_epoll_ctl(int epfd, int op, int fd, uint32_t interest, uint64_t data) {
    struct epoll_event ev = {0};
    if (interest & 1) ev.events |= EPOLLIN | EPOLLRDHUP;
    if (interest & 2) ev.events |= EPOLLOUT;
    ev.data.u64 = data;
    int kop = op == 0 ? EPOLL_CTL_ADD : (op == 1 ? EPOLL_CTL_MOD : EPOLL_CTL_DEL);
    return epoll_ctl(epfd, kop, fd, &ev);
}

int cqri_epoll_wait(int epfd, cqri_event *events, int max, int timeout_ms) {
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        uint32_t e = evs[i].events, r = 0;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLPRI)) r |= 1;
        if (e & EPOLLOUT) r |= 2;
        if (e & (EPOLLHUP | EPOLLERR)) r |= 4 | 1 | 2;
        events[i].data = evs[i].data.u64;
        events[i].events = r;
    }
    return n;
}

int cqri_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int cqri_signalfd(const int *signals, int count) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int cqri_signalfd_read(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    if (n != (ssize_t)sizeof info) return -1;
    return (int)info.ssi_signo;
}

int cqri_accept(int fd, uint8_t *address, int *family) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int c = accept4(fd, address ? (struct sockaddr *)&ss : NULL, address ? &len : NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0 && address) cqri_copy_peer(&ss, address, family);
    return c;
}
#else
int cqri_has_epoll(void) { return 0; }
int cqri_epoll_create(void) { errno = ENOSYS; return -1; }
int cqri_epoll_ctl(int epfd, int op, int fd, uint32_t interest, uint64_t data) { errno = ENOSYS; return -1; }
int cqri_epoll_wait(int epfd, cqri_event *events, int max, int timeout_ms) { errno = ENOSYS; return -1; }
int cqri_eventfd(void) { errno = ENOSYS; return -1; }
int cqri_signalfd(const int *signals, int count) { errno = ENOSYS; return -1; }
int cqri_signalfd_read(int fd) { return -1; }
int cqri_accept(int fd, uint8_t *address, int *family) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int c = accept(fd, address ? (struct sockaddr *)&ss : NULL, address ? &len : NULL);
    if (c >= 0) { cqri_set_nonblocking(c); fcntl(c, F_SETFD, FD_CLOEXEC); }
    if (c >= 0 && address) cqri_copy_peer(&ss, address, family);
    return c;
}
#endif

int cqri_block_signals(const int *signals, int count) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
    return pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int cqri_errno(void) { return errno; }

int cqri_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

int cqri_set_int_option(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof value);
}

ssize_t cqri_send(int fd, const void *buf, size_t len) {
#ifdef MSG_NOSIGNAL
    return send(fd, buf, len, MSG_NOSIGNAL);
#else
    return send(fd, buf, len, 0);
#endif
}

void cqri_ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }

long cqri_raise_nofile_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (long)rl.rlim_cur;
}

uint64_t cqri_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t cqri_wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000ull;
}

int cqri_set_keepalive(int fd, int idle, int interval, int count) {
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0) return -1;
#ifdef TCP_KEEPIDLE
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) != 0) return -1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval) != 0) return -1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count) != 0) return -1;
#endif
    return 0;
}

int cqri_peer_name(int fd, char *out, size_t size) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN];
    if (size == 0 || getpeername(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        if (!inet_ntop(AF_INET, &a->sin_addr, host, sizeof host)) return -1;
        snprintf(out, size, "%s:%u", host, (unsigned)ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        if (!inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host)) return -1;
        snprintf(out, size, "[%s]:%u", host, (unsigned)ntohs(a->sin6_port));
    } else {
        return -1;
    }
    return 0;
}

int cqri_open_spare(void) { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

void cqri_malloc_trim(void) {
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

int cqri_connect(const char *ip, int port) {
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        len = sizeof *a4;
    } else if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        len = sizeof *a6;
    } else {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int cqri_socket_error(int fd) {
    int error = 0;
    socklen_t len = sizeof error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) return errno;
    return error;
}

int cqri_resolve(const char *host, char *out, size_t size) {
    struct addrinfo hints, *res = NULL, *p;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) return -1;
    int found = -1;
    for (int pass = 0; pass < 2 && found != 0; pass++) {
        for (p = res; p; p = p->ai_next) {
            int want = pass == 0 ? AF_INET : AF_INET6;
            if (p->ai_family != want) continue;
            const void *addr = want == AF_INET ? (const void *)&((struct sockaddr_in *)p->ai_addr)->sin_addr
                                               : (const void *)&((struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
            if (inet_ntop(want, addr, out, (socklen_t)size)) { found = 0; break; }
        }
    }
    freeaddrinfo(res);
    return found;
}

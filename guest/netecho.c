/*
 * Ferry's guest network echo: what the lab's outside client talks to.
 *
 * Started by the guest's init when the kernel command line has ferry.net=ADDR/PREFIX
 * (init gives eth0 that address first).  Answers UDP datagrams on port 7 with the
 * same bytes, and echoes every byte of every TCP connection on port 7 back, in
 * order: a client that numbers what it sends sees a lost, reordered or reset
 * connection, and the longest time without an answer is the network blackout a
 * migration caused.  Single-threaded (poll): a handful of clients, tiny payloads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PORT 7
#define MAX_CLIENTS 32

static int listen_udp(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0) return -1;
    return fd;
}

static int listen_tcp(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 8) != 0) return -1;
    return fd;
}

/* Write all of buf (blocking socket); false if the connection is gone. */
static int write_all(int fd, const char *buf, ssize_t n) {
    while (n > 0) {
        ssize_t w = write(fd, buf, (size_t)n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 0;
        buf += w;
        n -= w;
    }
    return 1;
}

int main(void) {
    struct pollfd fds[2 + MAX_CLIENTS];
    int nclients = 0, one = 1;
    char buf[65536];
    fds[0].fd = listen_udp();
    fds[1].fd = listen_tcp();
    if (fds[0].fd < 0 || fds[1].fd < 0) {
        perror("netecho: bind port 7");
        return 1;
    }
    fds[0].events = fds[1].events = POLLIN;
    for (;;) {
        if (poll(fds, (nfds_t)(2 + nclients), -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (fds[0].revents & POLLIN) {
            struct sockaddr_in peer;
            socklen_t len = sizeof peer;
            ssize_t n = recvfrom(fds[0].fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
            if (n > 0) sendto(fds[0].fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, len);
        }
        if ((fds[1].revents & POLLIN) && nclients < MAX_CLIENTS) {
            int c = accept(fds[1].fd, NULL, NULL);
            if (c >= 0) {
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                fds[2 + nclients].fd = c;
                fds[2 + nclients].events = POLLIN;
                fds[2 + nclients].revents = 0;
                nclients++;
            }
        }
        for (int i = 0; i < nclients; i++) {
            struct pollfd *p = &fds[2 + i];
            if (!p->revents) continue;
            ssize_t n = read(p->fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0 || !write_all(p->fd, buf, n)) {
                close(p->fd);
                fds[2 + i] = fds[2 + nclients - 1];
                nclients--;
                i--;
            }
        }
    }
}

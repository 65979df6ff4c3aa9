/*
 * Ferry's guest workload: the proof that a guest survived a live migration.
 *
 * Runs as the guest's init payload.  Every 10 ms it writes a heartbeat line
 * with a sequence number to the second serial port (ttyS1), dirties pages of
 * its working set at the requested rate, and re-verifies a slice of the
 * working set against what it wrote.  A migration that "completed" but lost
 * or corrupted a dirty page shows up as a MEMERR line.  On start it bumps a
 * boot counter kept in the first sector of the boot disk, so a guest that
 * crashed and rebooted on the destination is visible as boots > 1.
 *
 * Parameters come from the kernel command line:
 *   ferry.wss=MiB     working set size (default 16)
 *   ferry.dirty=MiB/s dirty rate over the working set (default 0)
 *   ferry.disk=PATH   disk holding the boot counter (default /dev/vda)
 *
 * Output lines (ttyS1):
 *   FERRY BOOT <n> wss=<MiB> dirty=<MiB/s>
 *   HB <seq> <memory_errors>
 *   MEMERR page=<i> gen=<g> word=<w>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PAGE_WORDS 512 /* 4 KiB pages of 64-bit words */
#define TICK_NS 10000000LL
#define VERIFY_BUDGET_NS 2000000LL

static int out_fd = 1;

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    if (n > (int)sizeof buf) n = sizeof buf;
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(out_fd, buf + off, (size_t)(n - off));
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return;
        }
        off += w;
    }
}

static long cmdline_param(const char *name, long dflt, char *str_out, size_t str_len) {
    char buf[4096];
    int fd = open("/proc/cmdline", O_RDONLY);
    if (fd < 0) return dflt;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return dflt;
    buf[n] = 0;
    size_t len = strlen(name);
    for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n")) {
        if (strncmp(tok, name, len) == 0 && tok[len] == '=') {
            if (str_out) {
                snprintf(str_out, str_len, "%s", tok + len + 1);
                return 0;
            }
            return strtol(tok + len + 1, NULL, 10);
        }
    }
    return dflt;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline uint64_t pattern(uint64_t page, uint64_t gen, uint64_t word) {
    return (page * 0x9E3779B97F4A7C15ULL) ^ ((gen + 1) * 0xC2B2AE3D27D4EB4FULL) ^ (word * 0x165667B19E3779F9ULL);
}

static void fill(uint64_t *p, uint64_t page, uint64_t gen) {
    for (uint64_t w = 0; w < PAGE_WORDS; w++) p[w] = pattern(page, gen, w);
}

static int open_console(void) {
    int fd = open("/dev/ttyS1", O_WRONLY | O_NOCTTY);
    if (fd < 0) return 1; /* fall back to stdout (tests outside a guest) */
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        cfsetospeed(&t, B115200);
        tcsetattr(fd, TCSANOW, &t);
    }
    return fd;
}

/* The boot counter lives in sector 0 of the boot disk: "FERRYBOOT <n>\n". */
static long bump_boot_counter(const char *disk) {
    char sector[512];
    int fd = open(disk, O_RDWR | O_SYNC);
    if (fd < 0) return -1;
    long n = 0;
    if (pread(fd, sector, sizeof sector, 0) == (ssize_t)sizeof sector &&
        strncmp(sector, "FERRYBOOT ", 10) == 0)
        n = strtol(sector + 10, NULL, 10);
    n++;
    memset(sector, 0, sizeof sector);
    snprintf(sector, sizeof sector, "FERRYBOOT %ld\n", n);
    if (pwrite(fd, sector, sizeof sector, 0) != (ssize_t)sizeof sector) n = -1;
    fsync(fd);
    close(fd);
    return n;
}

int main(void) {
    char disk[128] = "/dev/vda";
    long wss_mib = cmdline_param("ferry.wss", 16, NULL, 0);
    long dirty_mib_s = cmdline_param("ferry.dirty", 0, NULL, 0);
    cmdline_param("ferry.disk", 0, disk, sizeof disk);
    if (wss_mib < 1) wss_mib = 1;
    if (dirty_mib_s < 0) dirty_mib_s = 0;

    out_fd = open_console();
    long boots = bump_boot_counter(disk);

    uint64_t pages = (uint64_t)wss_mib * 256;
    uint64_t *mem = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    uint32_t *gen = calloc(pages, sizeof *gen);
    if (mem == MAP_FAILED || !gen) {
        emit("FERRY FATAL cannot allocate %ld MiB\n", wss_mib);
        for (;;) pause();
    }
    for (uint64_t i = 0; i < pages; i++) fill(mem + i * PAGE_WORDS, i, 0);
    emit("FERRY BOOT %ld wss=%ld dirty=%ld\n", boots, wss_mib, dirty_mib_s);

    double pages_per_tick = (double)dirty_mib_s * 256.0 * TICK_NS / 1e9;
    double carry = 0;
    uint64_t rng = 0x2545F4914F6CDD1DULL ^ (uint64_t)now_ns();
    uint64_t verify_cursor = 0, seq = 0, errors = 0;
    int64_t next = now_ns();

    for (;;) {
        emit("HB %llu %llu\n", (unsigned long long)seq++, (unsigned long long)errors);

        carry += pages_per_tick;
        while (carry >= 1.0) {
            carry -= 1.0;
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            uint64_t i = rng % pages;
            gen[i]++;
            fill(mem + i * PAGE_WORDS, i, gen[i]);
        }

        int64_t verify_end = now_ns() + VERIFY_BUDGET_NS;
        do {
            for (int k = 0; k < 16; k++) {
                uint64_t i = verify_cursor;
                verify_cursor = (verify_cursor + 1) % pages;
                uint64_t *p = mem + i * PAGE_WORDS;
                for (uint64_t w = 0; w < PAGE_WORDS; w++) {
                    if (p[w] != pattern(i, gen[i], w)) {
                        errors++;
                        if (errors <= 100)
                            emit("MEMERR page=%llu gen=%u word=%llu\n",
                                 (unsigned long long)i, gen[i], (unsigned long long)w);
                        fill(p, i, gen[i]); /* report each corruption once */
                        break;
                    }
                }
            }
        } while (now_ns() < verify_end);

        next += TICK_NS;
        int64_t now = now_ns();
        if (next < now - TICK_NS) next = now; /* fell behind (guest paused): do not burst */
        struct timespec ts = {next / 1000000000LL, next % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
    }
}

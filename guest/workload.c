/*
 * Ferry's guest workload: the proof that a guest survived a live migration.
 *
 * Runs as the guest's init payload.  Every 20 ms it writes a heartbeat line
 * with a sequence number to the second serial port (ttyS1), dirties pages of
 * its working set at the requested rate, and re-verifies a slice of the
 * working set against what it wrote (for 2 ms; in a tick that began late,
 * a few pages only: a guest behind on a busy host sheds the verifying, not
 * its writes).  Each tick costs a TCG guest host CPU: at 10 ms with 2 ms of
 * verifying an idle guest took ~40 % of a CPU (six idle guests filled the
 * lab's two), at 20 ms ~28 %, with nothing to do ~12 %.  A migration that "completed" but lost
 * or corrupted a dirty page shows up as a MEMERR line.  On start it bumps a
 * boot counter kept in the first sector of the boot disk, so a guest that
 * crashed and rebooted on the destination is visible as boots > 1.
 *
 * Parameters come from the kernel command line:
 *   ferry.wss=MiB     working set size (default 16)
 *   ferry.dirty=MiB/s dirty rate over the working set (default 0)
 *   ferry.pattern=P   how the writes spread over the working set (default uniform):
 *                     uniform     each write to a random page of the working set
 *                     hotcold     9 of 10 writes to a hot eighth of the working set,
 *                                 the rest to random pages of the whole set (skewed)
 *                     burst       2 s at twice the rate, then 2 s idle (same average)
 *                     sequential  streams through the working set page by page
 *   ferry.disk=PATH   disk holding the boot counter (default /dev/vda)
 *   ferry.data=vdb,.. data disks: numbered, checksummed 4 KiB records
 *   ferry.fill=1      first fill every slot of a fresh data disk (benchmarks:
 *                     a disk full of data, not a sparse one)
 *
 * Data disks: a thread per disk writes record n (O_DIRECT, O_DSYNC) into
 * slot n mod slots, 50 records a second, and reads back a random earlier slot
 * and the slot written 32 records ago after each write: the slot must hold
 * exactly the record that was last written there.  On start it reads every
 * slot, checks each record it finds and resumes after the highest number, so
 * a lost, stale or torn write is reported whether it happened while running,
 * during a migration or across a reboot (except the one write in flight at a
 * hard reset, which was never acknowledged).
 *
 * Output lines (ttyS1):
 *   FERRY BOOT <n> wss=<MiB> dirty=<MiB/s> pattern=<P>
 *   HB <seq> <memory_errors> <disk_errors> <disk_records>
 *   MEMERR page=<i> gen=<g> word=<w>
 *   DISK <dev> slots=<n> resume=<record> checked=<n>
 *   DISKERR <dev> slot=<i> want=<record> got=<record> <why>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
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
#define TICK_NS 20000000LL
#define VERIFY_BUDGET_NS 2000000LL

static int out_fd = 1;
static pthread_mutex_t emit_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ullong disk_errors, disk_records;
static int fill_disks;

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    if (n > (int)sizeof buf) n = sizeof buf;
    pthread_mutex_lock(&emit_lock);
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(out_fd, buf + off, (size_t)(n - off));
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            break;
        }
        off += w;
    }
    pthread_mutex_unlock(&emit_lock);
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

enum pattern { UNIFORM, HOTCOLD, BURST, SEQUENTIAL };

static enum pattern parse_pattern(const char *name) {
    if (strcmp(name, "hotcold") == 0) return HOTCOLD;
    if (strcmp(name, "burst") == 0) return BURST;
    if (strcmp(name, "sequential") == 0) return SEQUENTIAL;
    return UNIFORM;
}

static const char *pattern_names[] = {"uniform", "hotcold", "burst", "sequential"};

static inline uint64_t xorshift(uint64_t *rng) {
    *rng ^= *rng << 13; *rng ^= *rng >> 7; *rng ^= *rng << 17;
    return *rng;
}

/* The next page to dirty under pattern `p` (cursor: the sequential position). */
static uint64_t next_page(enum pattern p, uint64_t pages, uint64_t *rng, uint64_t *cursor) {
    if (p == SEQUENTIAL) {
        uint64_t i = *cursor;
        *cursor = (*cursor + 1) % pages;
        return i;
    }
    if (p == HOTCOLD) {
        uint64_t hot = pages / 8 ? pages / 8 : 1;
        if (xorshift(rng) % 10 != 0) return xorshift(rng) % hot;
    }
    return xorshift(rng) % pages;
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


/* ---- data disks ---------------------------------------------------------- */
#define REC 4096
#define REC_MAGIC 0x4645525259524543ULL /* "FERRYREC" */
#define SCAN_CHUNK (256 * REC)
#define DISK_PERIOD_NS 20000000LL

struct disk {
    char dev[32];
    int fd;
    uint64_t slots;
    uint64_t next; /* next record number to write */
    uint8_t *buf;
};

static uint64_t fnv64(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x100000001b3ULL; }
    return h;
}

/* record layout: magic, number, slot, payload words..., checksum (last 8 bytes) */
static void make_record(uint8_t *b, uint64_t n, uint64_t slots) {
    uint64_t *w = (uint64_t *)b;
    w[0] = REC_MAGIC; w[1] = n; w[2] = n % slots;
    for (int i = 3; i < REC / 8 - 1; i++) w[i] = pattern(n, 7, (uint64_t)i);
    w[REC / 8 - 1] = fnv64(b, REC - 8);
}

/* 0: a valid record (its number in *n); 1: empty/foreign; -1: damaged */
static int read_record(const uint8_t *b, uint64_t slot, uint64_t *n) {
    const uint64_t *w = (const uint64_t *)b;
    if (w[0] != REC_MAGIC) return 1;
    if (w[2] != slot || w[REC / 8 - 1] != fnv64(b, REC - 8)) return -1;
    *n = w[1];
    return 0;
}

/* the record that must be in `slot` once records 0..last were written */
static int64_t expected(uint64_t slot, uint64_t last, uint64_t slots) {
    if (slot > last) return -1;
    return (int64_t)(last - ((last - slot) % slots));
}

static void disk_error(struct disk *d, uint64_t slot, int64_t want, int64_t got,
                       const char *why) {
    unsigned long long e = atomic_fetch_add(&disk_errors, 1) + 1;
    if (e <= 100)
        emit("DISKERR %s slot=%llu want=%lld got=%lld %s\n", d->dev, (unsigned long long)slot,
             (long long)want, (long long)got, why);
}

static int64_t slot_record(struct disk *d, uint64_t slot, uint8_t *b, int *state) {
    uint64_t n = 0;
    if (pread(d->fd, b, REC, (off_t)(slot * REC)) != REC) { *state = -2; return -1; }
    *state = read_record(b, slot, &n);
    return *state == 0 ? (int64_t)n : -1;
}

static void verify_slot(struct disk *d, uint64_t slot, uint64_t last, uint8_t *b) {
    int64_t want = expected(slot, last, d->slots);
    if (want < 0) return;
    int st;
    int64_t got = slot_record(d, slot, b, &st);
    if (st == -2) disk_error(d, slot, want, -1, "read-failed");
    else if (st == -1) disk_error(d, slot, want, -1, "damaged");
    else if (got != want) disk_error(d, slot, want, got, st == 1 ? "missing" : "stale");
}

static void *disk_thread(void *arg) {
    struct disk *d = arg;
    /* scan in big reads: what each slot holds (-1 empty, -2 damaged), and the
       highest record found: how far the previous run got */
    int64_t last = -1;
    uint64_t found = 0;
    uint8_t *b = d->buf + SCAN_CHUNK;
    int64_t *seen = malloc(d->slots * sizeof *seen);
    for (uint64_t s0 = 0; seen && s0 < d->slots; s0 += SCAN_CHUNK / REC) {
        uint64_t k = d->slots - s0 < SCAN_CHUNK / REC ? d->slots - s0 : SCAN_CHUNK / REC;
        if (pread(d->fd, d->buf, k * REC, (off_t)(s0 * REC)) != (ssize_t)(k * REC)) {
            disk_error(d, s0, -1, -1, "read-failed-at-start");
            for (uint64_t i = 0; i < k; i++) seen[s0 + i] = -1;
            continue;
        }
        for (uint64_t i = 0; i < k; i++) {
            uint64_t n = 0;
            int st = read_record(d->buf + i * REC, s0 + i, &n);
            seen[s0 + i] = st == 0 ? (int64_t)n : st == 1 ? -1 : -2;
            if (st == 0) { found++; if ((int64_t)n > last) last = (int64_t)n; }
        }
    }
    for (uint64_t s = 0; seen && last >= 0 && s < d->slots; s++) {
        int64_t want = expected(s, (uint64_t)last, d->slots);
        if (want < 0 || seen[s] == want) continue;
        /* the write in flight when the guest was reset was never acknowledged:
           its slot may hold the old record or a torn new one */
        if (s == (uint64_t)(last + 1) % d->slots) continue;
        disk_error(d, s, want, seen[s] < 0 ? -1 : seen[s],
                   seen[s] == -2 ? "damaged-at-start" : seen[s] == -1 ? "missing-at-start"
                                                                      : "stale-at-start");
    }
    free(seen);
    if (last < 0 && fill_disks) { /* fresh disk: write every slot, 1 MiB at a time */
        for (uint64_t s0 = 0; s0 < d->slots; s0 += SCAN_CHUNK / REC) {
            uint64_t k = d->slots - s0 < SCAN_CHUNK / REC ? d->slots - s0 : SCAN_CHUNK / REC;
            for (uint64_t i = 0; i < k; i++) make_record(d->buf + i * REC, s0 + i, d->slots);
            if (pwrite(d->fd, d->buf, k * REC, (off_t)(s0 * REC)) != (ssize_t)(k * REC)) {
                disk_error(d, s0, (int64_t)s0, -1, "fill-failed");
                break;
            }
            last = (int64_t)(s0 + k - 1);
            atomic_fetch_add(&disk_records, k);
        }
        emit("DISK %s filled=%lld\n", d->dev, (long long)(last + 1));
    }
    d->next = (uint64_t)(last + 1);
    emit("DISK %s slots=%llu resume=%llu checked=%llu\n", d->dev,
         (unsigned long long)d->slots, (unsigned long long)d->next, (unsigned long long)found);
    uint64_t rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)now_ns();
    int64_t next_t = now_ns();
    for (;;) {
        uint64_t n = d->next;
        make_record(d->buf, n, d->slots);
        if (pwrite(d->fd, d->buf, REC, (off_t)((n % d->slots) * REC)) != REC) {
            disk_error(d, n % d->slots, (int64_t)n, -1, "write-failed");
        } else {
            d->next = n + 1;
            atomic_fetch_add(&disk_records, 1);
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            uint64_t span = n + 1 < d->slots ? n + 1 : d->slots;
            verify_slot(d, rng % span, n, b);
            if (n >= 32) verify_slot(d, (n - 32) % d->slots, n, b);
        }
        next_t += DISK_PERIOD_NS;
        int64_t now = now_ns();
        if (next_t < now - DISK_PERIOD_NS) next_t = now;
        struct timespec ts = {next_t / 1000000000LL, next_t % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
    }
    return NULL;
}

static void start_disks(const char *list) {
    char copy[128];
    snprintf(copy, sizeof copy, "%s", list);
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        struct disk *d = calloc(1, sizeof *d);
        snprintf(d->dev, sizeof d->dev, "/dev/%s", tok);
        for (int i = 0; i < 100 && access(d->dev, F_OK) != 0; i++) usleep(50000);
        d->fd = open(d->dev, O_RDWR | O_DIRECT | O_DSYNC);
        uint64_t bytes = 0;
        if (d->fd < 0 || ioctl(d->fd, BLKGETSIZE64, &bytes) != 0 || bytes < REC ||
            posix_memalign((void **)&d->buf, REC, SCAN_CHUNK + REC) != 0) {
            emit("DISKERR %s slot=0 want=-1 got=-1 cannot-open\n", d->dev);
            atomic_fetch_add(&disk_errors, 1);
            continue;
        }
        d->slots = bytes / REC;
        pthread_t t;
        pthread_create(&t, NULL, disk_thread, d);
    }
}

int main(void) {
    char disk[128] = "/dev/vda";
    long wss_mib = cmdline_param("ferry.wss", 16, NULL, 0);
    long dirty_mib_s = cmdline_param("ferry.dirty", 0, NULL, 0);
    char data[128] = "", pattern_name[32] = "uniform";
    cmdline_param("ferry.pattern", 0, pattern_name, sizeof pattern_name);
    enum pattern pat = parse_pattern(pattern_name);
    cmdline_param("ferry.disk", 0, disk, sizeof disk);
    cmdline_param("ferry.data", 0, data, sizeof data);
    fill_disks = cmdline_param("ferry.fill", 0, NULL, 0) == 1;
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
    emit("FERRY BOOT %ld wss=%ld dirty=%ld pattern=%s\n", boots, wss_mib, dirty_mib_s,
         pattern_names[pat]);
    if (data[0]) start_disks(data);

    double pages_per_tick = (double)dirty_mib_s * 256.0 * TICK_NS / 1e9;
    double carry = 0;
    uint64_t rng = 0x2545F4914F6CDD1DULL ^ (uint64_t)now_ns();
    uint64_t verify_cursor = 0, write_cursor = 0, seq = 0, errors = 0;
    int64_t next = now_ns(), started = next;

    for (;;) {
        int late = now_ns() > next + TICK_NS / 2; /* this tick began late */
        emit("HB %llu %llu %llu %llu\n", (unsigned long long)seq++,
             (unsigned long long)errors, (unsigned long long)atomic_load(&disk_errors),
             (unsigned long long)atomic_load(&disk_records));

        if (pat != BURST)
            carry += pages_per_tick;
        else if ((now_ns() - started) / 2000000000LL % 2 == 0)
            carry += 2 * pages_per_tick; /* on: twice the rate; off: nothing */
        while (carry >= 1.0) {
            carry -= 1.0;
            uint64_t i = next_page(pat, pages, &rng, &write_cursor);
            gen[i]++;
            fill(mem + i * PAGE_WORDS, i, gen[i]);
        }

        int64_t verify_end = now_ns() + VERIFY_BUDGET_NS;
        if (late) verify_end = 0; /* a few pages only */
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

/* snarl-faults: fault injection over a whole analysis. Replays a recorded
 * image (fz_image.h) of a real core once to count the memory reads and the
 * allocations its commands make, then replays it again for every N, failing
 * the Nth backend read (--reads) or the Nth allocation (--allocs), all in
 * this one process. Each run must end in a report (status 0 or 1) or a clean
 * error (status 2 with a sentence); a crash, a sanitizer report or a leak
 * (the ASan build, at exit) fails the tool. Prints how many N there were,
 * how the runs ended and how long they took. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fz_image.h"

/* Most N tried per image and kind unless --max says otherwise: far above
 * what a recorded analysis makes, so it only stops a runaway. */
#define FAULTS_N_MAX 10000000ull

typedef struct faults_tally {
    uint64_t runs, reports, errors, attach_errors, unfired;
} faults_tally;

static int faults_sink(void *ctx, const char *data, size_t len) {
    (void)ctx;
    (void)data;
    (void)len;
    return 0;
}

static bool faults_read_file(const char *path, uint8_t **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return false;
    }
    size_t cap = 1 << 20, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) {
            break;
        }
        uint8_t *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    bool ok = buf && !ferror(f);
    fclose(f);
    if (!ok) {
        free(buf);
        return false;
    }
    *data = buf;
    *len = n;
    return true;
}

enum { FAULTS_NONE, FAULTS_READ, FAULTS_ALLOC };

/* One replay of the image with the nth read or allocation failed (n = 0:
 * none). Returns false when a run ends badly; *reads and *allocs get what
 * the replay made, *fired whether the failure happened. */
/* Replay only the RUN records of this command (NULL: all of them). */
static const char *faults_only;

static bool faults_replay(const char *name, const uint8_t *data, size_t len, int kind, uint64_t n,
                          faults_tally *tally, uint64_t *reads, uint64_t *allocs, bool *fired) {
    err_record err;
    err_clear(&err);
    fz_image img;
    if (!fz_image_load(&img, &err, data, len)) {
        fprintf(stderr, "snarl-faults: %s is not an image\n", name);
        return false;
    }
    mem *m = img.m;
    img.m = NULL;
    m->fail_countdown = kind == FAULTS_READ ? n : UINT64_MAX;
    uint64_t before = util_alloc_calls();
    util_fail_alloc_at(kind == FAULTS_ALLOC ? n : 0);
    bool ok = true;
    snarl_session *s = snarl_open(NULL);
    engine_attach_opts o = fz_image_attach_opts(&img);
    if (!s) {
        mem_close(m);
        tally->attach_errors++;
    } else if (engine_attach_mem(s, m, "core", &o) != 0) {
        tally->attach_errors++;
        if (!snarl_error(s)[0]) {
            fprintf(stderr, "snarl-faults: %s, N=%llu: attach failed without a sentence\n", name,
                    (unsigned long long)n);
            ok = false;
        }
    } else {
        static const fz_run check = {0, SNARL_FORMAT_TEXT, 0, 0};
        size_t nruns = img.runs.len ? img.runs.len : 1;
        for (size_t i = 0; i < nruns; i++) {
            const fz_run *run = img.runs.len ? VEC_AT(&img.runs, fz_run, i) : &check;
            if (faults_only && (run->command >= FZ_COMMANDS ||
                                strcmp(fz_commands[run->command], faults_only) != 0)) {
                continue;
            }
            int st = fz_image_run(s, run, faults_sink, NULL);
            if (st == SNARL_STATUS_CLEAN || st == SNARL_STATUS_FOUND) {
                tally->reports++;
            } else if (st == SNARL_STATUS_ERROR && snarl_error(s)[0]) {
                tally->errors++;
            } else {
                fprintf(stderr, "snarl-faults: %s, N=%llu, %s: status %d, error '%s'\n", name,
                        (unsigned long long)n,
                        run->command < FZ_COMMANDS ? fz_commands[run->command] : "?", st,
                        snarl_error(s));
                ok = false;
            }
        }
    }
    if (s) {
        /* A fired read countdown stops at 0; an unfired one is still counting. */
        *reads = UINT64_MAX - m->fail_countdown;
        *fired = kind == FAULTS_READ ? m->fail_countdown == 0 : false;
    }
    snarl_close(s);
    *allocs = util_alloc_calls() - before;
    if (kind == FAULTS_ALLOC) {
        *fired = n <= *allocs;
    }
    util_fail_alloc_at(0);
    fz_image_free(&img);
    tally->runs++;
    return ok;
}

static double faults_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool faults_kind(const char *name, const uint8_t *data, size_t len, int kind, uint64_t count,
                        uint64_t stride, uint64_t max) {
    faults_tally tally = {0};
    double t0 = faults_now();
    bool ok = true;
    uint64_t last = count < max ? count : max;
    for (uint64_t n = 1; n <= last; n += stride) {
        uint64_t reads, allocs;
        bool fired = false;
        ok &= faults_replay(name, data, len, kind, n, &tally, &reads, &allocs, &fired);
        if (!fired) {
            tally.unfired++;
        }
    }
    printf("%s: %s: N = 1..%llu (every %llu): %llu runs, %llu reports, %llu errors, %llu "
           "failed attaches, %llu not fired; %.1f s\n",
           name, kind == FAULTS_READ ? "failed read" : "failed allocation",
           (unsigned long long)last, (unsigned long long)stride, (unsigned long long)tally.runs,
           (unsigned long long)tally.reports, (unsigned long long)tally.errors,
           (unsigned long long)tally.attach_errors, (unsigned long long)tally.unfired,
           faults_now() - t0);
    fflush(stdout);
    return ok && tally.unfired == 0;
}

static int usage(void) {
    fprintf(stderr,
            "usage: snarl-faults [--reads] [--allocs] [--command CMD] [--stride K] [--max N]\n"
            "                    IMAGE...\n"
            "Fails the Nth memory read (--reads) or allocation (--allocs) of each image's\n"
            "recorded analysis (its CMD runs only, with --command), for every N (or every\n"
            "Kth); both by default.\n");
    return 2;
}

int main(int argc, char **argv) {
    bool reads = false, allocs = false;
    uint64_t stride = 1, max = FAULTS_N_MAX;
    int first = 1;
    for (; first < argc && argv[first][0] == '-'; first++) {
        if (strcmp(argv[first], "--reads") == 0) {
            reads = true;
        } else if (strcmp(argv[first], "--allocs") == 0) {
            allocs = true;
        } else if (strcmp(argv[first], "--stride") == 0 && first + 1 < argc) {
            stride = strtoull(argv[++first], NULL, 10);
        } else if (strcmp(argv[first], "--command") == 0 && first + 1 < argc) {
            faults_only = argv[++first];
        } else if (strcmp(argv[first], "--max") == 0 && first + 1 < argc) {
            max = strtoull(argv[++first], NULL, 10);
        } else {
            return usage();
        }
    }
    if (first == argc || stride == 0) {
        return usage();
    }
    if (!reads && !allocs) {
        reads = allocs = true;
    }
    bool ok = true;
    for (int i = first; i < argc; i++) {
        uint8_t *data;
        size_t len;
        if (!faults_read_file(argv[i], &data, &len)) {
            fprintf(stderr, "snarl-faults: cannot read %s\n", argv[i]);
            return 2;
        }
        faults_tally base = {0};
        uint64_t nreads = 0, nallocs = 0;
        bool fired;
        ok &= faults_replay(argv[i], data, len, FAULTS_NONE, 0, &base, &nreads, &nallocs, &fired);
        if (base.reports == 0) {
            fprintf(stderr, "snarl-faults: %s gives no report without faults\n", argv[i]);
            ok = false;
        }
        if (reads) {
            ok &= faults_kind(argv[i], data, len, FAULTS_READ, nreads, stride, max);
        }
        if (allocs) {
            ok &= faults_kind(argv[i], data, len, FAULTS_ALLOC, nallocs, stride, max);
        }
        free(data);
    }
    return ok ? 0 : 1;
}

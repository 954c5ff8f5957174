/* libFuzzer target: the whole engine over a replayable memory image
 * (fz_image.h) recorded from a real core, so every walker runs on mutated
 * target memory: threads and frames, code objects and line tables, dicts,
 * sets, deques, the task registries and lists, await chains, loops and
 * resources, the reachability pass over the GC lists, and every view. The
 * image's RUN records say which commands run. A finding is a crash, a
 * sanitizer report, a leak, a hang (-timeout) or growth past -rss_limit_mb,
 * and also a status outside 0..2 or an error without a sentence. */
#include <stdio.h>
#include <stdlib.h>

#include "fz_image.h"

/* Output one input may make: far beyond what a recorded image prints, so
 * more means a walk that does not end. */
#define FZ_OUTPUT_MAX (64u << 20)

static int fz_sink(void *ctx, const char *data, size_t len) {
    size_t *total = ctx;
    (void)data;
    *total += len;
    if (*total > FZ_OUTPUT_MAX) {
        fprintf(stderr, "fuzz_engine: more than %u bytes of output\n", FZ_OUTPUT_MAX);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    err_record err;
    err_clear(&err);
    fz_image img;
    if (!fz_image_load(&img, &err, data, size)) {
        return 0;
    }
    snarl_session *s = snarl_open(NULL);
    engine_attach_opts o = fz_image_attach_opts(&img);
    mem *m = img.m;
    img.m = NULL;
    if (!s) {
        mem_close(m);
    } else if (engine_attach_mem(s, m, "core", &o) == 0) {
        static const fz_run check = {0, SNARL_FORMAT_TEXT, 0, 0};
        size_t nruns = img.runs.len ? img.runs.len : 1;
        for (size_t i = 0; i < nruns; i++) {
            const fz_run *run = img.runs.len ? VEC_AT(&img.runs, fz_run, i) : &check;
            size_t total = 0;
            int st = fz_image_run(s, run, fz_sink, &total);
            if (st < SNARL_STATUS_CLEAN || st > SNARL_STATUS_ERROR ||
                (st == SNARL_STATUS_ERROR && !snarl_error(s)[0])) {
                fprintf(stderr, "fuzz_engine: status %d, error '%s'\n", st, snarl_error(s));
                abort();
            }
        }
    } else if (!snarl_error(s)[0]) {
        fprintf(stderr, "fuzz_engine: attach failed without a sentence\n");
        abort();
    }
    snarl_close(s);
    fz_image_free(&img);
    return 0;
}

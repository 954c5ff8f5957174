/* snarl-record: turns a real core into a replayable memory image (fz_image.h)
 * holding only what snarl's analysis of it reads: it runs every command on
 * the core while watching each memory read and symbol lookup, writes those
 * bytes and facts with the commands, then replays the image and checks that
 * every command prints exactly what it printed from the core. The images are
 * the engine fuzz target's seeds and the fault-injection tool's input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz_image.h"

/* Unread gaps up to this long between read bytes are filled in (when the
 * target has them), so an image holds fewer, longer segments. */
#define REC_GAP_MERGE 64

typedef struct rec_page {
    uint64_t addr;
    uint8_t data[MEM_PAGE_SIZE];
    uint8_t mask[MEM_PAGE_SIZE / 8]; /* bit per byte read */
} rec_page;

typedef struct rec_sym {
    char *name;
    bool section;
    uint64_t addr, size;
    const char *file; /* borrowed from the session's maps */
} rec_sym;

typedef struct recorder {
    mem *m;
    u64map page_index; /* page address + 1 -> index in pages */
    vec pages;         /* rec_page * */
    vec syms;          /* rec_sym */
    bool oom;
} recorder;

static void rec_mem(void *ctx, uint64_t addr, size_t len, const void *data) {
    recorder *r = ctx;
    const uint8_t *src = data;
    while (len > 0 && !r->oom) {
        uint64_t page = addr & ~(uint64_t)(MEM_PAGE_SIZE - 1);
        size_t off = (size_t)(addr - page), n = MEM_PAGE_SIZE - off;
        if (n > len) {
            n = len;
        }
        uint64_t idx;
        rec_page *p;
        if (u64map_get(&r->page_index, page + 1, &idx)) {
            p = *VEC_AT(&r->pages, rec_page *, idx);
        } else {
            p = calloc(1, sizeof *p);
            rec_page **slot = p ? vec_push(&r->pages) : NULL;
            if (!slot || !u64map_put(&r->page_index, page + 1, r->pages.len - 1)) {
                free(p);
                r->oom = true;
                return;
            }
            *slot = p;
            p->addr = page;
        }
        memcpy(p->data + off, src, n);
        for (size_t k = off; k < off + n; k++) {
            p->mask[k / 8] |= (uint8_t)(1u << (k % 8));
        }
        addr += n;
        src += n;
        len -= n;
    }
}

static void rec_sym_seen(void *ctx, const char *name, bool section, const sym_hit *hit) {
    recorder *r = ctx;
    for (size_t i = 0; i < r->syms.len; i++) {
        const rec_sym *s = VEC_AT(&r->syms, rec_sym, i);
        if (s->section == section && strcmp(s->name, name) == 0 &&
            strcmp(s->file, hit->file->path) == 0) {
            return;
        }
    }
    rec_sym *s = vec_push(&r->syms);
    if (!s || !(s->name = strdup(name))) {
        r->oom = true;
        return;
    }
    s->section = section;
    s->addr = hit->addr;
    s->size = hit->size;
    s->file = hit->file->path;
}

static int rec_page_cmp(const void *a, const void *b) {
    const rec_page *x = *(rec_page *const *)a, *y = *(rec_page *const *)b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static bool rec_bit(const rec_page *p, size_t k) {
    return (p->mask[k / 8] >> (k % 8)) & 1u;
}

typedef struct rec_run_buf {
    uint64_t start;
    sbuf bytes;
} rec_run_buf;

static void rec_flush_seg(sbuf *img, rec_run_buf *run, size_t *nsegs) {
    if (run->bytes.len) {
        fz_put_record2(img, FZ_REC_SEG, &run->start, 8, run->bytes.data, run->bytes.len);
        (*nsegs)++;
    }
    sbuf_reset(&run->bytes);
    run->bytes.len = 0;
}

/* Segments: the bytes read, in runs; small unread gaps are filled from the
 * target, or with whole pages when `pages` (richer memory for the fuzzer,
 * larger images). */
static size_t rec_put_segments(recorder *r, sbuf *img, bool pages) {
    if (r->pages.len > 1) {
        qsort(r->pages.data, r->pages.len, sizeof(rec_page *), rec_page_cmp);
    }
    void (*observe)(void *, uint64_t, size_t, const void *) = r->m->observe;
    r->m->observe = NULL; /* filling gaps is not the analysis reading */
    rec_run_buf run = {0};
    sbuf_init(&run.bytes);
    size_t nsegs = 0;
    uint8_t gap[REC_GAP_MERGE];
    for (size_t i = 0; i < r->pages.len; i++) {
        rec_page *p = *VEC_AT(&r->pages, rec_page *, i);
        uint8_t whole[MEM_PAGE_SIZE];
        if (pages && mem_read(r->m, p->addr, MEM_PAGE_SIZE, whole) == ERR_OK) {
            memcpy(p->data, whole, sizeof whole);
            memset(p->mask, 0xff, sizeof p->mask);
        }
        for (size_t k = 0; k < MEM_PAGE_SIZE; k++) {
            if (!rec_bit(p, k)) {
                continue;
            }
            uint64_t a = p->addr + k;
            uint64_t end = run.start + run.bytes.len;
            if (run.bytes.len && a != end) {
                uint64_t g = a - end;
                if (a > end && g <= REC_GAP_MERGE &&
                    mem_read(r->m, end, (size_t)g, gap) == ERR_OK) {
                    sbuf_add(&run.bytes, (const char *)gap, (size_t)g);
                } else {
                    rec_flush_seg(img, &run, &nsegs);
                }
            }
            if (!run.bytes.len) {
                run.start = a;
            }
            sbuf_addc(&run.bytes, (char)p->data[k]);
        }
    }
    rec_flush_seg(img, &run, &nsegs);
    sbuf_free(&run.bytes);
    r->m->observe = observe;
    return nsegs;
}

static int rec_sink(void *ctx, const char *data, size_t len) {
    sbuf_add(ctx, data, len);
    return 0;
}

/* The commands recorded: every view, each with what it alone reads
 * (reachability for check, the GC scan for tasks, locals for task). */
static const fz_run rec_runs[] = {
    {0, SNARL_FORMAT_TEXT, 0, 0},                  /* check */
    {1, SNARL_FORMAT_TEXT, 0, 0},                  /* stacks */
    {2, SNARL_FORMAT_TEXT, FZ_RUN_ALL_OBJECTS, 0}, /* tasks --all-objects */
    {3, SNARL_FORMAT_TEXT, 0, 0},                  /* tree */
    {4, SNARL_FORMAT_JSON, 0, 0},                  /* graph --format json */
    {5, SNARL_FORMAT_TEXT, 0, 0},                  /* task ID: locals */
};
#define REC_RUNS ARRAY_LEN(rec_runs)

/* The first task id of a tasks JSON document. */
static uint64_t rec_first_task(const char *json) {
    const char *p = strstr(json, "\"tasks\":[{\"id\":\"");
    return p ? strtoull(p + strlen("\"tasks\":[{\"id\":\""), NULL, 16) : 0;
}

static int usage(void) {
    fprintf(stderr, "usage: snarl-record [--sysroot DIR] [--pages] [--task ID] [--run COMMAND]\n"
                    "                    CORE [EXE] OUT\n"
                    "Records what snarl reads of CORE into the image OUT, then checks that\n"
                    "replaying OUT prints what CORE printed.\n");
    return 2;
}

static bool rec_write(const char *path, const sbuf *b) {
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(b->data, 1, b->len, f) == b->len;
    if (f && fclose(f) != 0) {
        ok = false;
    }
    return ok;
}

/* Replays the image and compares each command's status and output. */
static bool rec_verify(const sbuf *img, const fz_run *runs, size_t nruns, sbuf *want,
                       const int *want_status) {
    err_record err;
    err_clear(&err);
    fz_image im;
    if (!fz_image_load(&im, &err, (const uint8_t *)img->data, img->len)) {
        fprintf(stderr, "snarl-record: the image does not load\n");
        return false;
    }
    snarl_session *s = snarl_open(NULL);
    engine_attach_opts o = fz_image_attach_opts(&im);
    mem *m = im.m;
    im.m = NULL;
    bool ok = s && engine_attach_mem(s, m, "core", &o) == 0;
    if (!ok) {
        fprintf(stderr, "snarl-record: the image does not attach: %s\n", snarl_error(s));
    }
    for (size_t i = 0; ok && i < nruns; i++) {
        sbuf got;
        sbuf_init(&got);
        int st = fz_image_run(s, &runs[i], rec_sink, &got);
        if (st != want_status[i] || strcmp(sbuf_str(&got), sbuf_str(&want[i])) != 0) {
            fprintf(stderr,
                    "snarl-record: replaying %s differs (status %d, was %d)\n--- core:\n%s\n"
                    "--- image:\n%s\n",
                    fz_commands[runs[i].command], st, want_status[i], sbuf_str(&want[i]),
                    sbuf_str(&got));
            ok = false;
        }
        sbuf_free(&got);
    }
    snarl_close(s);
    fz_image_free(&im);
    return ok;
}

int main(int argc, char **argv) {
    const char *sysroot = NULL, *pos[3];
    size_t npos = 0;
    bool pages = false;
    const char *only[REC_RUNS]; /* record these commands of rec_runs */
    size_t nonly = 0;
    uint64_t task = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--sysroot") == 0 && i + 1 < argc) {
            sysroot = argv[++i];
        } else if (strcmp(argv[i], "--task") == 0 && i + 1 < argc) {
            task = strtoull(argv[++i], NULL, 16);
        } else if (strcmp(argv[i], "--run") == 0 && i + 1 < argc) {
            if (nonly < REC_RUNS) {
                only[nonly++] = argv[++i];
            }
        } else if (strcmp(argv[i], "--pages") == 0) {
            pages = true;
        } else if (argv[i][0] == '-' || npos == 3) {
            return usage();
        } else {
            pos[npos++] = argv[i];
        }
    }
    if (npos < 2) {
        return usage();
    }
    const char *core = pos[0], *exe = npos == 3 ? pos[1] : NULL, *out = pos[npos - 1];
    err_record err;
    err_clear(&err);
    mem *m = mem_core_open(&err, core, exe, sysroot);
    if (!m) {
        fprintf(stderr, "snarl-record: %s\n", err.msg);
        return 2;
    }
    recorder r = {0};
    r.m = m;
    u64map_init(&r.page_index);
    vec_init(&r.pages, sizeof(rec_page *));
    vec_init(&r.syms, sizeof(rec_sym));
    m->observe = rec_mem;
    m->observe_ctx = &r;
    snarl_options so = {.sysroot = sysroot};
    snarl_session *s = snarl_open(&so);
    engine_attach_opts o = {.observe = rec_sym_seen, .observe_ctx = &r};
    if (!s || engine_attach_mem(s, m, "core", &o) != 0) {
        fprintf(stderr, "snarl-record: %s\n", snarl_error(s));
        return 2;
    }
    fz_run runs[REC_RUNS];
    size_t nruns = 0;
    for (size_t i = 0; i < REC_RUNS; i++) {
        bool want = nonly == 0;
        for (size_t k = 0; k < nonly; k++) {
            want |= strcmp(only[k], fz_commands[rec_runs[i].command]) == 0;
        }
        if (want) {
            runs[nruns++] = rec_runs[i];
        }
    }
    if (nruns == 0) {
        return usage();
    }
    if (!task) {
        sbuf doc;
        sbuf_init(&doc);
        fz_run list = {2, SNARL_FORMAT_JSON, 0, 0};
        fz_image_run(s, &list, rec_sink, &doc);
        task = rec_first_task(sbuf_str(&doc));
        sbuf_free(&doc);
    }
    sbuf want[REC_RUNS];
    int status[REC_RUNS];
    for (size_t i = 0; i < nruns; i++) {
        runs[i].task_id = task;
        sbuf_init(&want[i]);
        status[i] = fz_image_run(s, &runs[i], rec_sink, &want[i]);
    }
    sbuf img;
    sbuf_init(&img);
    fz_put_header(&img);
    int32_t pid = m->pid;
    fz_put_record2(&img, FZ_REC_TARGET, &pid, 4, m->executable ? m->executable : "",
                   m->executable ? strlen(m->executable) : 0);
    for (size_t i = 0; i < m->maps.len; i++) {
        const mem_map *mp = VEC_AT(&m->maps, mem_map, i);
        uint64_t h[3] = {mp->start, mp->end, mp->offset};
        fz_put_record2(&img, FZ_REC_MAP, h, sizeof h, mp->path, strlen(mp->path));
    }
    for (size_t i = 0; i < m->tids.len; i++) {
        fz_put_record(&img, FZ_REC_TID, VEC_AT(&m->tids, int64_t, i), 8);
    }
    for (size_t i = 0; i < r.syms.len; i++) {
        const rec_sym *sy = VEC_AT(&r.syms, rec_sym, i);
        uint32_t map = 0;
        while (map < m->maps.len && strcmp(VEC_AT(&m->maps, mem_map, map)->path, sy->file) != 0) {
            map++;
        }
        uint8_t h[21];
        h[0] = sy->section;
        memcpy(h + 1, &map, 4);
        memcpy(h + 5, &sy->addr, 8);
        memcpy(h + 13, &sy->size, 8);
        fz_put_record2(&img, FZ_REC_SYM, h, sizeof h, sy->name, strlen(sy->name));
    }
    for (size_t i = 0; i < nruns; i++) {
        uint8_t h[11] = {runs[i].command, runs[i].format, runs[i].flags};
        memcpy(h + 3, &runs[i].task_id, 8);
        fz_put_record(&img, FZ_REC_RUN, h, sizeof h);
    }
    size_t nsegs = rec_put_segments(&r, &img, pages);
    int rc = 0;
    if (r.oom || img.oom) {
        fprintf(stderr, "snarl-record: out of memory\n");
        rc = 2;
    } else if (!rec_write(out, &img)) {
        fprintf(stderr, "snarl-record: cannot write %s\n", out);
        rc = 2;
    }
    fprintf(stderr,
            "snarl-record: %s: %zu bytes, %zu segments, %zu pages touched, %zu symbols; "
            "statuses",
            out, img.len, nsegs, (size_t)r.pages.len, (size_t)r.syms.len);
    for (size_t i = 0; i < nruns; i++) {
        fprintf(stderr, " %s=%d", fz_commands[runs[i].command], status[i]);
    }
    fprintf(stderr, "\n");
    snarl_close(s);
    if (rc == 0 && !rec_verify(&img, runs, nruns, want, status)) {
        rc = 1;
    }
    for (size_t i = 0; i < REC_RUNS; i++) {
        sbuf_free(&want[i]);
    }
    for (size_t i = 0; i < r.pages.len; i++) {
        free(*VEC_AT(&r.pages, rec_page *, i));
    }
    for (size_t i = 0; i < r.syms.len; i++) {
        free(VEC_AT(&r.syms, rec_sym, i)->name);
    }
    vec_free(&r.pages);
    vec_free(&r.syms);
    u64map_free(&r.page_index);
    sbuf_free(&img);
    return rc;
}

/* Loading and writing replayable memory images (see fz_image.h): a memory
 * backend over the image's segments, read in place from the caller's buffer,
 * and the symbol presets and commands the image records. */
#include "fz_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Records one image may hold: a recorded analysis has a few thousand. */
#define FZ_RECORDS_MAX (1u << 20)
/* Longest path or symbol name kept; longer ones are cut (PATH_MAX). */
#define FZ_STRING_MAX 4096
/* Commands one image runs, so one input cannot keep the fuzzer busy long. */
#define FZ_RUNS_MAX 8

const char *const fz_commands[FZ_COMMANDS] = {"check", "stacks", "tasks", "tree", "graph", "task"};

typedef struct fz_seg {
    uint64_t addr;
    size_t len;
    const uint8_t *data;
    size_t order; /* position in the file: later segments win on overlap */
} fz_seg;

/* The image is sparse whole pages, as a core holds them: a page with any
 * recorded byte reads whole, its unrecorded bytes as zero (the analysis that
 * was recorded never read them); a page with none is not in the target. So
 * the page cache works as on the core, and fault injection counts the reads
 * the core would have served. */
typedef struct fz_mem {
    mem base;
    vec segs;     /* fz_seg sorted by addr, trimmed not to overlap */
    u64set pages; /* page number + 1 of every page a segment touches */
} fz_mem;

static err_t fz_mem_read(mem *m, uint64_t addr, size_t len, void *dst) {
    const fz_mem *fm = (const fz_mem *)m;
    /* The last byte, not one past it: the page cache reads the top page of
     * the address space, whose end wraps to 0. */
    uint64_t last = addr + (len - 1);
    if (len == 0 || last < addr) {
        return len == 0 ? ERR_OK : ERR_READ;
    }
    for (uint64_t pg = addr / MEM_PAGE_SIZE; pg <= last / MEM_PAGE_SIZE; pg++) {
        if (!u64set_has(&fm->pages, pg + 1)) {
            return ERR_READ;
        }
    }
    memset(dst, 0, len);
    /* First segment whose last byte is at or after addr: segments do not
     * overlap, so their ends are sorted as their starts are. */
    size_t lo = 0, hi = fm->segs.len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const fz_seg *sg = VEC_AT(&fm->segs, fz_seg, mid);
        if (sg->addr + (sg->len - 1) < addr) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (size_t i = lo; i < fm->segs.len; i++) {
        const fz_seg *sg = VEC_AT(&fm->segs, fz_seg, i);
        if (sg->addr > last) {
            break;
        }
        uint64_t a = sg->addr > addr ? sg->addr : addr;
        uint64_t sg_last = sg->addr + (sg->len - 1);
        uint64_t b = sg_last < last ? sg_last : last;
        memcpy((uint8_t *)dst + (a - addr), sg->data + (a - sg->addr), (size_t)(b - a) + 1);
    }
    return ERR_OK;
}

static void fz_mem_close(mem *m) {
    fz_mem *fm = (fz_mem *)m;
    vec_free(&fm->segs);
    u64set_free(&fm->pages);
    util_free(fm);
}

static const mem_ops fz_mem_ops = {
    .kind = "image",
    .read = fz_mem_read,
    .close = fz_mem_close,
};

static int fz_seg_cmp(const void *a, const void *b) {
    const fz_seg *x = a, *y = b;
    if (x->addr != y->addr) {
        return x->addr < y->addr ? -1 : 1;
    }
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Trims sorted segments so none overlaps the next (the later start wins),
 * drops empty ones, and notes the pages they touch. */
static bool fz_mem_index(fz_mem *fm) {
    size_t out = 0;
    for (size_t i = 0; i < fm->segs.len; i++) {
        fz_seg sg = *VEC_AT(&fm->segs, fz_seg, i);
        if (i + 1 < fm->segs.len) {
            uint64_t next = VEC_AT(&fm->segs, fz_seg, i + 1)->addr;
            if (sg.len > next - sg.addr) {
                sg.len = (size_t)(next - sg.addr);
            }
        }
        if (sg.len == 0) {
            continue;
        }
        *VEC_AT(&fm->segs, fz_seg, out++) = sg;
        uint64_t last = (sg.addr + sg.len - 1) / MEM_PAGE_SIZE;
        for (uint64_t pg = sg.addr / MEM_PAGE_SIZE; pg <= last; pg++) {
            if (u64set_add(&fm->pages, pg + 1) < 0) {
                return false;
            }
        }
    }
    fm->segs.len = out;
    return true;
}

static uint64_t fz_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint32_t fz_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* A NUL-terminated copy of n bytes, owned by the image. */
static const char *fz_string(fz_image *img, const uint8_t *p, size_t n) {
    if (n > FZ_STRING_MAX) {
        n = FZ_STRING_MAX;
    }
    char *s = util_alloc(n + 1);
    char **slot = s ? vec_push(&img->strings) : NULL;
    if (!slot) {
        util_free(s);
        return NULL;
    }
    memcpy(s, p, n);
    s[n] = '\0';
    *slot = s;
    return s;
}

typedef struct fz_symrec {
    bool section;
    uint32_t map;
    uint64_t addr, size;
    const char *name;
} fz_symrec;

bool fz_image_load(fz_image *img, err_record *err, const uint8_t *data, size_t len) {
    memset(img, 0, sizeof *img);
    vec_init(&img->presets, sizeof(sym_preset));
    vec_init(&img->strings, sizeof(char *));
    vec_init(&img->runs, sizeof(fz_run));
    if (len < FZ_MAGIC_LEN + 4 || memcmp(data, FZ_MAGIC, FZ_MAGIC_LEN) != 0 ||
        fz_u32(data + FZ_MAGIC_LEN) != FZ_VERSION) {
        return false;
    }
    fz_mem *fm = (fz_mem *)mem_new(err, &fz_mem_ops, sizeof *fm);
    if (!fm) {
        return false;
    }
    vec_init(&fm->segs, sizeof(fz_seg));
    u64set_init(&fm->pages);
    img->m = &fm->base;
    vec paths, syms; /* map paths in record order; SYM records until maps are known */
    vec_init(&paths, sizeof(const char *));
    vec_init(&syms, sizeof(fz_symrec));
    bool ok = true;
    size_t off = FZ_MAGIC_LEN + 4;
    for (size_t nrec = 0; ok && off + 5 <= len && nrec < FZ_RECORDS_MAX; nrec++) {
        uint8_t type = data[off];
        size_t n = fz_u32(data + off + 1);
        const uint8_t *p = data + off + 5;
        if (n > len - off - 5) {
            n = len - off - 5; /* a cut record keeps what is there */
        }
        off += 5 + n;
        if (type == FZ_REC_TARGET && n >= 4) {
            img->m->pid = (int32_t)fz_u32(p);
            const char *exe = fz_string(img, p + 4, n - 4);
            util_free(img->m->executable);
            img->m->executable = exe ? util_strdup(exe) : NULL;
            ok = exe && img->m->executable;
        } else if (type == FZ_REC_MAP && n >= 24) {
            const char *path = fz_string(img, p + 24, n - 24);
            const char **slot = path ? vec_push(&paths) : NULL;
            ok = slot &&
                 mem_add_map(img->m, fz_u64(p), fz_u64(p + 8), fz_u64(p + 16), path) == ERR_OK;
            if (slot) {
                *slot = path;
            }
        } else if (type == FZ_REC_TID && n >= 8) {
            int64_t *slot = vec_push(&img->m->tids);
            ok = slot != NULL;
            if (slot) {
                *slot = (int64_t)fz_u64(p);
            }
        } else if (type == FZ_REC_SYM && n >= 21) {
            fz_symrec *r = vec_push(&syms);
            ok = r && (r->name = fz_string(img, p + 21, n - 21)) != NULL;
            if (ok) {
                r->section = p[0] != 0;
                r->map = fz_u32(p + 1);
                r->addr = fz_u64(p + 5);
                r->size = fz_u64(p + 13);
            }
        } else if (type == FZ_REC_SEG && n >= 8) {
            fz_seg *s = vec_push(&fm->segs);
            ok = s != NULL;
            if (s) {
                s->addr = fz_u64(p);
                s->len = n - 8;
                s->data = p + 8;
                s->order = fm->segs.len;
                /* A segment that runs past the end of the address space is
                 * cut at it: its last byte, addr + len - 1, never wraps. */
                if (s->len && s->addr + (s->len - 1) < s->addr) {
                    s->len = (size_t)(UINT64_MAX - s->addr) + 1;
                }
            }
        } else if (type == FZ_REC_RUN && n >= 11 && img->runs.len < FZ_RUNS_MAX) {
            fz_run *r = vec_push(&img->runs);
            ok = r != NULL;
            if (r) {
                r->command = p[0];
                r->format = p[1];
                r->flags = p[2];
                r->task_id = fz_u64(p + 3);
            }
        }
    }
    for (size_t i = 0; ok && i < syms.len; i++) {
        const fz_symrec *r = VEC_AT(&syms, fz_symrec, i);
        if (r->map >= paths.len) {
            continue;
        }
        sym_preset *sp = vec_push(&img->presets);
        ok = sp != NULL;
        if (sp) {
            sp->file = *VEC_AT(&paths, const char *, r->map);
            sp->name = r->name;
            sp->section = r->section;
            sp->addr = r->addr;
            sp->size = r->size;
        }
    }
    vec_free(&paths);
    vec_free(&syms);
    if (!ok) {
        err_set(err, ERR_NOMEM, NULL);
        fz_image_free(img);
        return false;
    }
    if (fm->segs.len > 1) {
        qsort(fm->segs.data, fm->segs.len, sizeof(fz_seg), fz_seg_cmp);
    }
    if (!fz_mem_index(fm)) {
        err_set(err, ERR_NOMEM, NULL);
        fz_image_free(img);
        return false;
    }
    mem_sort_maps(img->m);
    return true;
}

void fz_image_free(fz_image *img) {
    if (img->m) {
        mem_close(img->m);
        img->m = NULL;
    }
    for (size_t i = 0; i < img->strings.len; i++) {
        util_free(*VEC_AT(&img->strings, char *, i));
    }
    vec_free(&img->strings);
    vec_free(&img->presets);
    vec_free(&img->runs);
}

engine_attach_opts fz_image_attach_opts(const fz_image *img) {
    engine_attach_opts o = {0};
    o.presets = img->presets.data;
    o.npresets = img->presets.len;
    return o;
}

int fz_image_run(snarl_session *s, const fz_run *run, snarl_sink sink, void *ctx) {
    char id[32];
    snprintf(id, sizeof id, "0x%llx", (unsigned long long)run->task_id);
    snarl_request req = {0};
    req.command = run->command < FZ_COMMANDS ? fz_commands[run->command] : "no-such-command";
    req.format = (snarl_format)run->format;
    req.task_id = id;
    req.all = (run->flags & FZ_RUN_ALL) != 0;
    req.all_objects = (run->flags & FZ_RUN_ALL_OBJECTS) != 0;
    return snarl_run(s, &req, sink, ctx);
}

void fz_put_header(sbuf *b) {
    uint32_t v = FZ_VERSION;
    sbuf_add(b, FZ_MAGIC, FZ_MAGIC_LEN);
    sbuf_add(b, (const char *)&v, sizeof v);
}

void fz_put_record2(sbuf *b, uint8_t type, const void *head, size_t hlen, const void *tail,
                    size_t tlen) {
    uint32_t n = (uint32_t)(hlen + tlen);
    sbuf_addc(b, (char)type);
    sbuf_add(b, (const char *)&n, sizeof n);
    if (hlen) {
        sbuf_add(b, head, hlen);
    }
    if (tlen) {
        sbuf_add(b, tail, tlen);
    }
}

void fz_put_record(sbuf *b, uint8_t type, const void *payload, size_t len) {
    fz_put_record2(b, type, payload, len, NULL, 0);
}

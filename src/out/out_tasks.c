/* `tasks` and `task ID` as text: the table of every task, identical tasks
 * grouped into one row, and one task in full. The wording of each cell comes
 * from out_model.c; the layout (grouping, widths, order) is decided here. */
#include "out.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    OUT_COL_COUNT,
    OUT_COL_ID,
    OUT_COL_NAME,
    OUT_COL_STATE,
    OUT_COL_FRAME,
    OUT_COL_WAITS,
    OUT_COL_BY,
    OUT_NCOLS,
};

static const char *const out_col_head[OUT_NCOLS] = {
    "", "id", "name", "state", "innermost frame", "waits on", "awaited by",
};

/* Widest each column may grow, in terminal columns, so that one long name or
 * path cannot push the rest of a row off the screen; longer cells end in "…".
 * Counts up to "×9999999"; an id is "0x" and 16 digits; names and frames get
 * most of a wide terminal. */
static const size_t out_col_cap[OUT_NCOLS] = {8, 18, 32, 9, 48, 40, 40};

/* A cell is cut long before this many bytes; the awaited-by list stops
 * growing here so that a task awaited by thousands costs no more. */
#define OUT_CELL_BYTES 512

/* The grouping hash, eight bytes a step: a million tasks hash their
 * stacks' names and files, and a byte a step was a twentieth of `tasks`.
 * Only equal tasks must hash alike; out_alike settles the rest. */
static uint64_t out_hash_word(uint64_t h, uint64_t w) {
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

static uint64_t out_hash(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    uint64_t w;
    for (; n >= sizeof w; n -= sizeof w, c += sizeof w) {
        memcpy(&w, c, sizeof w);
        h = out_hash_word(h, w);
    }
    w = n;
    memcpy(&w, c, n); /* the tail's bytes, or its length when empty */
    return out_hash_word(h, w);
}

static uint64_t out_hash_str(uint64_t h, const char *s) {
    return s ? out_hash(h, s, strlen(s) + 1) : out_hash(h, "\xff", 1);
}

/* Length of a name without its trailing digits: "worker-17" and "Task-3"
 * number tasks made alike. */
static size_t out_name_key(const char *name) {
    size_t n = name ? strlen(name) : 0;
    while (n && name[n - 1] >= '0' && name[n - 1] <= '9') {
        n--;
    }
    return n;
}

/* Kinds where which object is awaited matters to the reader (two Locks are
 * two rows); for the rest, the kind alone (and the type, for other). */
static bool out_wait_has_identity(aio_kind k) {
    switch (k) {
    case AIO_KIND_TASK:
    case AIO_KIND_LOCK:
    case AIO_KIND_SEMAPHORE:
    case AIO_KIND_CONDITION:
    case AIO_KIND_EVENT:
    case AIO_KIND_QUEUE:
    case AIO_KIND_BARRIER:
        return true;
    default:
        return false;
    }
}

static bool out_frames_alike(const aio_frame *a, const aio_frame *b) {
    if (!a->name || !b->name) {
        return !a->name && !b->name;
    }
    /* One record per code object: the same record names the same place. */
    return a->line == b->line &&
           (a->name == b->name || (strcmp(a->name->function, b->name->function) == 0 &&
                                   strcmp(a->name->file, b->name->file) == 0));
}

static uint64_t out_group_hash(const aio_task *t) {
    uint64_t h = 0xcbf29ce484222325ull;
    size_t key = out_name_key(t->name);
    h = t->name ? out_hash(h, t->name, key) : out_hash(h, "\xff", 1);
    int facts[4] = {(int)t->state, (int)t->waits_kind, t->truncated, t->running_thread != 0};
    h = out_hash(h, facts, sizeof facts);
    if (t->request) { /* tasks serving the same route group; their clients differ */
        h = out_hash_str(h, t->request->method);
        h = out_hash_str(h, t->request->path);
    }
    for (size_t k = 0; k < t->frames.len; k++) {
        const aio_frame *f = VEC_AT(&t->frames, aio_frame, k);
        h = out_hash_str(h, aio_frame_function(f));
        if (aio_frame_function(f)) {
            h = out_hash_str(h, aio_frame_file(f));
            h = out_hash(h, &f->line, sizeof f->line);
        }
    }
    if (out_wait_has_identity(t->waits_kind)) {
        h = out_hash(h, &t->waits_on, sizeof t->waits_on);
    } else if (t->waits_kind == AIO_KIND_OTHER) {
        h = out_hash_str(h, t->waits_type ? t->waits_type : "");
    }
    return h;
}

/* The grouping rule: same name but for trailing digits, same state, same
 * stack frame by frame, same kind of wait on the same resource (or, for
 * per-task waits such as sleeps, the same kind). A running task stands alone. */
static bool out_alike(const aio_task *a, const aio_task *b) {
    size_t ka = out_name_key(a->name), kb = out_name_key(b->name);
    if (!a->name != !b->name || ka != kb || (ka && memcmp(a->name, b->name, ka) != 0)) {
        return false;
    }
    if (!a->request != !b->request ||
        (a->request && (strcmp(a->request->method, b->request->method) != 0 ||
                        strcmp(a->request->path, b->request->path) != 0))) {
        return false;
    }
    if (a->state != b->state || a->waits_kind != b->waits_kind || a->truncated != b->truncated ||
        a->running_thread || b->running_thread || a->frames.len != b->frames.len) {
        return false;
    }
    if (out_wait_has_identity(a->waits_kind) && a->waits_on != b->waits_on) {
        return false;
    }
    if (a->waits_kind == AIO_KIND_OTHER &&
        strcmp(a->waits_type ? a->waits_type : "", b->waits_type ? b->waits_type : "") != 0) {
        return false;
    }
    for (size_t k = 0; k < a->frames.len; k++) {
        if (!out_frames_alike(VEC_AT(&a->frames, aio_frame, k), VEC_AT(&b->frames, aio_frame, k))) {
            return false;
        }
    }
    return true;
}

typedef struct out_hashed {
    uint64_t hash;
    size_t pos;
} out_hashed;

static int out_hashed_cmp(const void *a, const void *b) {
    const out_hashed *x = a, *y = b;
    if (x->hash != y->hash) {
        return x->hash < y->hash ? -1 : 1;
    }
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* rep[i]: the first task (in model order) of i's group; i itself when i
 * leads or all is set. Sorting by hash keeps this n log n on big heaps. */
static bool out_group(const aio_model *m, bool all, size_t *rep) {
    size_t n = m->tasks.len;
    for (size_t i = 0; i < n; i++) {
        rep[i] = i;
    }
    if (all || n < 2) {
        return true;
    }
    out_hashed *hs = util_calloc(n, sizeof *hs);
    size_t *leads = util_calloc(n, sizeof *leads);
    if (!hs || !leads) {
        util_free(hs);
        util_free(leads);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        hs[i].hash = out_group_hash(VEC_AT(&m->tasks, aio_task, i));
        hs[i].pos = i;
    }
    qsort(hs, n, sizeof *hs, out_hashed_cmp);
    for (size_t a = 0; a < n;) {
        size_t b = a, nleads = 0;
        while (b < n && hs[b].hash == hs[a].hash) {
            b++;
        }
        /* Within one hash, compare in full: a collision must not merge. */
        for (size_t k = a; k < b; k++) {
            const aio_task *t = VEC_AT(&m->tasks, aio_task, hs[k].pos);
            size_t j = 0;
            while (j < nleads && !out_alike(VEC_AT(&m->tasks, aio_task, leads[j]), t)) {
                j++;
            }
            if (j == nleads) {
                leads[nleads++] = hs[k].pos;
            }
            rep[hs[k].pos] = leads[j];
        }
        a = b;
    }
    util_free(hs);
    util_free(leads);
    return true;
}

/* Appends s cut to cap terminal columns, the cut marked with "…". */
static void out_fit(sbuf *dst, const char *s, size_t cap) {
    if (out_width(s) <= cap) {
        sbuf_adds(dst, s);
        return;
    }
    size_t cols = 0;
    const char *p = s;
    for (; *p; p++) {
        if ((*p & 0xc0) != 0x80) {
            if (cols == cap - 1) {
                break;
            }
            cols++;
        }
    }
    sbuf_add(dst, s, (size_t)(p - s));
    sbuf_adds(dst, "…");
}

static bool out_done(const aio_task *t) {
    return t->state == AIO_STATE_DONE || t->state == AIO_STATE_CANCELLED;
}

/* A group's wait when its members' phrases differ (sleeps with their own
 * deadlines, gathers of different sizes): the kind, and for timers the range. */
static void out_waits_common(sbuf *b, const out_index *ix, size_t lead, const size_t *next) {
    const aio_model *m = ix->m;
    const aio_task *first = VEC_AT(&m->tasks, aio_task, lead);
    aio_kind k = first->waits_kind;
    const aio_resource *r = out_find_resource(ix, first->waits_on);
    if (k == AIO_KIND_SLEEP || k == AIO_KIND_TIMEOUT) {
        double lo = 0, hi = 0;
        bool timed = true;
        for (size_t i = lead; timed && i != SIZE_MAX; i = next[i]) {
            const aio_resource *ri =
                out_find_resource(ix, VEC_AT(&m->tasks, aio_task, i)->waits_on);
            timed = ri && ri->has_remaining;
            if (timed) {
                lo = i == lead || ri->remaining < lo ? ri->remaining : lo;
                hi = i == lead || ri->remaining > hi ? ri->remaining : hi;
            }
        }
        sbuf_adds(b, out_kind_word(k));
        if (timed && isinf(hi)) {
            sbuf_adds(b, isinf(lo) ? " forever" : " (some forever)");
        } else if (timed) {
            sbuf_printf(b, " %.1f–%.1fs left", lo, hi);
        }
    } else if (r && r->type[0] && k != AIO_KIND_GATHER && k != AIO_KIND_TASKGROUP &&
               k != AIO_KIND_WAIT) {
        out_clean(b, r->type);
    } else {
        sbuf_adds(b, out_kind_word(k));
    }
}

typedef struct out_table {
    sbuf cells;  /* every cell, NUL-terminated, row after row */
    vec offsets; /* size_t per cell */
    size_t width[OUT_NCOLS];
} out_table;

static void out_cell(out_table *tb, size_t col, sbuf *text) {
    size_t *off = vec_push(&tb->offsets);
    if (!off) {
        tb->cells.oom = true;
        return;
    }
    *off = tb->cells.len;
    out_fit(&tb->cells, sbuf_str(text), out_col_cap[col]);
    size_t wd = out_width(tb->cells.data ? tb->cells.data + *off : "");
    if (wd > tb->width[col]) {
        tb->width[col] = wd;
    }
    sbuf_addc(&tb->cells, '\0');
    sbuf_reset(text);
}

/* One row: the group led by task `lead`, its members chained through next. */
static void out_row(out_table *tb, const out_index *ix, size_t lead, size_t count,
                    const size_t *next, sbuf *t1, sbuf *t2, u64set *seen) {
    const aio_model *m = ix->m;
    const aio_task *t = VEC_AT(&m->tasks, aio_task, lead);
    if (count > 1) {
        sbuf_printf(t1, "×%zu", count);
    }
    out_cell(tb, OUT_COL_COUNT, t1);
    sbuf_printf(t1, "0x%" PRIx64, t->id);
    out_cell(tb, OUT_COL_ID, t1);

    bool same_name = true;
    for (size_t i = next[lead]; i != SIZE_MAX && same_name; i = next[i]) {
        const char *o = VEC_AT(&m->tasks, aio_task, i)->name;
        same_name = (!o && !t->name) || (o && t->name && strcmp(o, t->name) == 0);
    }
    if (!t->name) {
        sbuf_addc(t1, '-');
    } else if (same_name) {
        out_clean(t1, t->name);
    } else {
        sbuf_add(t1, t->name, out_name_key(t->name));
        sbuf_addc(t1, '*');
        /* The name key came from the target too. */
        for (size_t k = 0; k < t1->len; k++) {
            if ((unsigned char)t1->data[k] < 0x20 || t1->data[k] == 0x7f) {
                t1->data[k] = '?';
            }
        }
    }
    if (t->name) {
        out_task_request(t1, t);
    }
    out_cell(tb, OUT_COL_NAME, t1);
    sbuf_adds(t1, aio_state_name(t->state));
    out_cell(tb, OUT_COL_STATE, t1);
    if (t->frames.len) {
        out_frame_short(t1, VEC_AT(&t->frames, aio_frame, 0));
    } else {
        sbuf_addc(t1, '-');
    }
    out_cell(tb, OUT_COL_FRAME, t1);

    out_waits_phrase(t1, ix, t, false);
    for (size_t i = next[lead]; i != SIZE_MAX; i = next[i]) {
        sbuf_reset(t2);
        out_waits_phrase(t2, ix, VEC_AT(&m->tasks, aio_task, i), false);
        if (strcmp(sbuf_str(t1), sbuf_str(t2)) != 0) {
            sbuf_reset(t1);
            out_waits_common(t1, ix, lead, next);
            break;
        }
    }
    out_cell(tb, OUT_COL_WAITS, t1);

    /* Awaiters of every member, each named once. */
    for (size_t i = lead; i != SIZE_MAX && t1->len < OUT_CELL_BYTES; i = next[i]) {
        const vec *by = &VEC_AT(&m->tasks, aio_task, i)->awaited_by;
        for (size_t k = 0; k < by->len && t1->len < OUT_CELL_BYTES; k++) {
            uint64_t id = *VEC_AT(by, uint64_t, k);
            int added = u64set_add(seen, id);
            if (added <= 0) {
                t1->oom = t1->oom || added < 0;
                continue;
            }
            const aio_task *a = out_find_task(ix, id);
            sbuf_adds(t1, t1->len ? ", " : "");
            if (a && a->name) {
                out_clean(t1, a->name);
            } else {
                sbuf_printf(t1, "0x%" PRIx64, id);
            }
        }
    }
    if (!t1->len) {
        sbuf_addc(t1, '-');
    }
    out_cell(tb, OUT_COL_BY, t1);
    /* Empty for the next row; freed rather than cleared, so that one row with
     * thousands of awaiters does not make every later row clear a big table. */
    if (seen->count) {
        u64set_free(seen);
    }
}

static void out_print_table(out_writer *w, out_table *tb, size_t nrows, bool counts) {
    size_t first_col = counts ? OUT_COL_COUNT : OUT_COL_ID;
    for (size_t c = 0; c < OUT_NCOLS; c++) {
        size_t hw = out_width(out_col_head[c]);
        if (hw > tb->width[c]) {
            tb->width[c] = hw;
        }
    }
    for (size_t r = 0; r <= nrows; r++) {
        for (size_t c = first_col; c < OUT_NCOLS; c++) {
            const char *cell =
                r == 0 ? out_col_head[c]
                       : tb->cells.data + *VEC_AT(&tb->offsets, size_t, (r - 1) * OUT_NCOLS + c);
            out_puts(w, cell);
            if (c + 1 < OUT_NCOLS) {
                out_printf(w, "%*s", (int)(tb->width[c] - out_width(cell) + 2), "");
            }
        }
        out_puts(w, "\n");
    }
}

void out_tasks_text(out_writer *w, const aio_model *m, bool all) {
    out_header_text(w, m);
    size_t n = m->tasks.len;
    if (!n) {
        return;
    }
    out_index ix;
    if (!out_index_build(&ix, m, w)) {
        return;
    }
    size_t *rep = util_calloc(n, sizeof *rep);
    size_t *next = util_calloc(n, sizeof *next);
    size_t *count = util_calloc(n, sizeof *count);
    size_t *tail = util_calloc(n, sizeof *tail);
    out_table tb = {0};
    sbuf_init(&tb.cells);
    vec_init(&tb.offsets, sizeof(size_t));
    sbuf t1, t2;
    sbuf_init(&t1);
    sbuf_init(&t2);
    u64set seen;
    u64set_init(&seen);
    if (!rep || !next || !count || !tail || !out_group(m, all, rep)) {
        w->failed = true;
        goto done;
    }
    /* Chain each group's members in model order. */
    for (size_t i = 0; i < n; i++) {
        next[i] = SIZE_MAX;
        size_t r = rep[i];
        if (r != i) {
            next[tail[r]] = i;
        }
        tail[r] = i;
        count[r]++;
    }
    size_t nrows = 0;
    bool grouped = false;
    /* Pending (and unknown) tasks first, done ones last, each in model order. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            const aio_task *t = VEC_AT(&m->tasks, aio_task, i);
            if (rep[i] != i || out_done(t) != (pass == 1)) {
                continue;
            }
            out_row(&tb, &ix, i, count[i], next, &t1, &t2, &seen);
            grouped = grouped || count[i] > 1;
            nrows++;
        }
    }
    if (tb.cells.oom || t1.oom || t2.oom) {
        w->failed = true;
        goto done;
    }
    out_puts(w, "\n");
    out_print_table(w, &tb, nrows, grouped);
    if (grouped) {
        out_puts(w, "\n×N: one row for N alike tasks (same name but for a number, same state, "
                    "stack and wait); --all lists each\n");
    }
done:
    u64set_free(&seen);
    sbuf_free(&t1);
    sbuf_free(&t2);
    sbuf_free(&tb.cells);
    vec_free(&tb.offsets);
    util_free(rep);
    util_free(next);
    util_free(count);
    util_free(tail);
    out_index_free(&ix);
}

static void out_task_list(out_writer *w, const out_index *ix, const vec *ids, sbuf *b) {
    if (!ids->len) {
        out_puts(w, "    (none)\n");
    }
    for (size_t i = 0; i < ids->len; i++) {
        uint64_t id = *VEC_AT(ids, uint64_t, i);
        const aio_task *t = out_find_task(ix, id);
        const aio_resource *r = t ? NULL : out_find_resource(ix, id);
        sbuf_reset(b);
        if (t) {
            out_task_ref_id(b, t);
        } else if (r) {
            out_resource_label(b, r, true);
        } else {
            sbuf_printf(b, "0x%" PRIx64 " (not in the model)", id);
        }
        out_printf(w, "    %s\n", sbuf_str(b));
    }
}

/* The tasks a resource lists (waiters, members), on one indented line. */
static void out_id_line(out_writer *w, const out_index *ix, const char *what, const vec *ids,
                        sbuf *b) {
    if (!ids->len) {
        return;
    }
    sbuf_reset(b);
    for (size_t i = 0; i < ids->len; i++) {
        uint64_t id = *VEC_AT(ids, uint64_t, i);
        const aio_task *t = out_find_task(ix, id);
        sbuf_adds(b, i ? ", " : "");
        if (t) {
            out_task_ref_id(b, t);
        } else {
            sbuf_printf(b, "0x%" PRIx64, id);
        }
    }
    out_printf(w, "        %s: %s\n", what, sbuf_str(b));
}

void out_task_text(out_writer *w, const aio_model *m, const aio_task *t) {
    out_index ix;
    if (!out_index_build(&ix, m, w)) {
        return;
    }
    sbuf b;
    sbuf_init(&b);
    out_task_ref_id(&b, t);
    if (!t->name) {
        sbuf_adds(&b, " (no name)");
    }
    out_printf(w, "%s\n", sbuf_str(&b));
    out_printf(w, "    type:       %s%s\n", t->type && t->type[0] ? t->type : "?",
               t->c_task ? "" : " (pure Python)");
    out_printf(w, "    state:      %s", aio_state_name(t->state));
    if (t->cancels) {
        out_printf(w, ", %d cancel request%s", t->cancels, t->cancels == 1 ? "" : "s");
    }
    out_puts(w, "\n");
    if (t->loop) {
        out_printf(w, "    loop:       0x%" PRIx64 "\n", t->loop);
    } else {
        out_puts(w, "    loop:       unknown\n");
    }
    out_printf(w, "    found by:   %s\n", t->found_by ? t->found_by : "?");
    if (t->created_at) {
        sbuf_reset(&b);
        out_clean(&b, t->created_at);
        out_printf(w, "    created at: %s\n", sbuf_str(&b));
    } else {
        out_puts(w, "    created at: unknown (asyncio debug mode records it)\n");
    }
    if (t->running_thread) {
        out_printf(w, "    running in thread %" PRId64 "\n", t->running_thread);
    }

    out_puts(w, "\nStack (innermost first):\n");
    if (t->truncated) {
        /* The chain is walked from the task's coroutine inward: a cut loses
         * the innermost frames. */
        out_puts(w, "    ... (inner frames missing: the chain is damaged or too deep)\n");
    } else if (!t->frames.len) {
        out_puts(w, "    (no coroutine frames)\n");
    }
    for (size_t k = 0; k < t->frames.len; k++) {
        const aio_frame *f = VEC_AT(&t->frames, aio_frame, k);
        sbuf_reset(&b);
        if (!aio_frame_function(f)) {
            sbuf_printf(&b, "<unreadable at 0x%" PRIx64 ">", f->addr);
        } else {
            out_clean(&b, aio_frame_function(f));
            sbuf_adds(&b, " (");
            out_clean(&b, aio_frame_file(f) ? aio_frame_file(f) : "?");
            if (f->line >= 0) {
                sbuf_printf(&b, ":%d", f->line);
            }
            sbuf_addc(&b, ')');
        }
        out_printf(w, "    %s\n", sbuf_str(&b));
        const vec *locals = aio_frame_locals_of(f);
        for (size_t i = 0; locals && i < locals->len; i++) {
            const aio_local *l = VEC_AT(locals, aio_local, i);
            sbuf_reset(&b);
            out_clean(&b, l->name ? l->name : "?");
            sbuf_adds(&b, " = ");
            out_clean(&b, l->repr ? l->repr : "<unreadable>");
            out_printf(w, "        %s\n", sbuf_str(&b));
        }
    }

    out_puts(w, "\nWaits on:\n");
    sbuf_reset(&b);
    out_waits_phrase(&b, &ix, t, true);
    const aio_resource *r = out_find_resource(&ix, t->waits_on);
    out_printf(w, "    %s\n", sbuf_str(&b));
    if (t->waits_kind != AIO_KIND_TASK && r) {
        out_id_line(w, &ix, "waiters", &r->waiters, &b);
        out_id_line(w, &ix, "stands for", &r->members, &b);
    }

    out_puts(w, "\nAwaited by:\n");
    out_task_list(w, &ix, &t->awaited_by, &b);
    if (t->awaited_by_interp && t->awaited_by_interp->len) {
        out_puts(w, "\nAwaited by, as the interpreter records it:\n");
        out_task_list(w, &ix, t->awaited_by_interp, &b);
    }
    out_puts(w, "\nAwaits:\n");
    out_task_list(w, &ix, &t->awaits, &b);
    if (b.oom) {
        w->failed = true;
    }
    sbuf_free(&b);
    out_index_free(&ix);
}

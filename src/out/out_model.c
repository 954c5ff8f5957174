/* What the views share: lookups by id over one model, and the short phrases
 * that name a task, a frame, a resource or a wait in text. The views decide
 * layout; these pieces decide wording, so every view says the same thing. */
#include "out.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Paths longer than this keep only their last two components in the short
 * frame form: a table has room for a file name, not a site-packages path. */
#define OUT_FILE_SHORT_AT 32

static int out_ix_cmp(const void *a, const void *b) {
    const out_ix_entry *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static bool out_ix_add(vec *ix, uint64_t id, size_t pos) {
    out_ix_entry *e = vec_push(ix);
    if (e) {
        e->id = id;
        e->pos = pos;
    }
    return e != NULL;
}

static void out_ix_sort(vec *ix) {
    if (ix->len > 1) {
        qsort(ix->data, ix->len, sizeof(out_ix_entry), out_ix_cmp);
    }
}

bool out_index_build(out_index *ix, const aio_model *m, out_writer *w) {
    ix->m = m;
    vec_init(&ix->tasks, sizeof(out_ix_entry));
    vec_init(&ix->resources, sizeof(out_ix_entry));
    bool ok = true;
    for (size_t i = 0; ok && i < m->tasks.len; i++) {
        ok = out_ix_add(&ix->tasks, VEC_AT(&m->tasks, aio_task, i)->id, i);
    }
    for (size_t i = 0; ok && i < m->resources.len; i++) {
        ok = out_ix_add(&ix->resources, VEC_AT(&m->resources, aio_resource, i)->id, i);
    }
    if (!ok) {
        out_index_free(ix);
        if (w) {
            w->failed = true;
        }
        return false;
    }
    out_ix_sort(&ix->tasks);
    out_ix_sort(&ix->resources);
    return true;
}

void out_index_free(out_index *ix) {
    vec_free(&ix->tasks);
    vec_free(&ix->resources);
}

static size_t out_ix_find(const vec *ix, uint64_t id) {
    if (!id || !ix->len) {
        return SIZE_MAX;
    }
    out_ix_entry key = {.id = id};
    const out_ix_entry *e = bsearch(&key, ix->data, ix->len, sizeof key, out_ix_cmp);
    return e ? e->pos : SIZE_MAX;
}

size_t out_task_pos(const out_index *ix, uint64_t id) {
    return out_ix_find(&ix->tasks, id);
}

size_t out_resource_pos(const out_index *ix, uint64_t id) {
    return out_ix_find(&ix->resources, id);
}

const aio_task *out_find_task(const out_index *ix, uint64_t id) {
    size_t pos = out_ix_find(&ix->tasks, id);
    return pos == SIZE_MAX ? NULL : VEC_AT(&ix->m->tasks, aio_task, pos);
}

const aio_resource *out_find_resource(const out_index *ix, uint64_t id) {
    size_t pos = out_ix_find(&ix->resources, id);
    return pos == SIZE_MAX ? NULL : VEC_AT(&ix->m->resources, aio_resource, pos);
}

void out_clean(sbuf *b, const char *s) {
    util_escape(b, s, strlen(s), 0);
}

void out_task_request(sbuf *b, const aio_task *t) {
    const aio_request *r = t->request;
    if (!r) {
        return;
    }
    sbuf_adds(b, " [");
    out_clean(b, r->method[0] ? r->method : "?");
    sbuf_addc(b, ' ');
    out_clean(b, r->path[0] ? r->path : "?");
    if (r->client[0]) {
        sbuf_adds(b, " from ");
        out_clean(b, r->client);
    }
    sbuf_addc(b, ']');
}

void out_task_ref(sbuf *b, const aio_task *t) {
    if (t->name) {
        sbuf_adds(b, "task '");
        out_clean(b, t->name);
        sbuf_addc(b, '\'');
    } else {
        sbuf_printf(b, "task 0x%" PRIx64, t->id);
    }
    out_task_request(b, t);
}

void out_task_ref_id(sbuf *b, const aio_task *t) {
    out_task_ref(b, t);
    if (t->name) {
        sbuf_printf(b, " (0x%" PRIx64 ")", t->id);
    }
}

static const char *out_short_file(const char *file) {
    if (strlen(file) <= OUT_FILE_SHORT_AT) {
        return file;
    }
    const char *last = strrchr(file, '/');
    if (!last || last == file) {
        return file;
    }
    for (const char *p = last - 1; p > file; p--) {
        if (*p == '/') {
            return p + 1;
        }
    }
    return file;
}

void out_frame_short(sbuf *b, const aio_frame *f) {
    if (!aio_frame_function(f)) {
        sbuf_printf(b, "<unreadable at 0x%" PRIx64 ">", f->addr);
        return;
    }
    out_clean(b, aio_frame_function(f));
    sbuf_addc(b, ' ');
    out_clean(b, aio_frame_file(f) ? out_short_file(aio_frame_file(f)) : "?");
    if (f->line >= 0) {
        sbuf_printf(b, ":%d", f->line);
    }
}

/* Seconds as people read them: tenths, or milliseconds below a tenth. */
static void out_seconds(sbuf *b, double s) {
    sbuf_printf(b, s >= 0.1 || s == 0 ? "%.1fs" : "%.3fs", s);
}

static void out_timing(sbuf *b, const aio_resource *r) {
    if ((r->has_remaining && isinf(r->remaining)) || (r->has_deadline && isinf(r->deadline))) {
        sbuf_adds(b, " forever"); /* sleep(math.inf), anyio's sleep_forever */
    } else if (r->has_remaining && r->remaining >= 0) {
        sbuf_addc(b, ' ');
        out_seconds(b, r->remaining);
        sbuf_adds(b, " left");
    } else if (r->has_remaining) {
        /* A timer past due that has not fired: the loop is not running. */
        sbuf_adds(b, " overdue by ");
        out_seconds(b, -r->remaining);
    } else if (r->has_deadline) {
        sbuf_printf(b, " until %.1f", r->deadline);
    }
}

const char *out_kind_word(aio_kind k) {
    switch (k) {
    case AIO_KIND_TASK:
        return "task";
    case AIO_KIND_FUTURE:
        return "Future";
    case AIO_KIND_SLEEP:
        return "sleep";
    case AIO_KIND_LOCK:
        return "Lock";
    case AIO_KIND_SEMAPHORE:
        return "Semaphore";
    case AIO_KIND_CONDITION:
        return "Condition";
    case AIO_KIND_EVENT:
        return "Event";
    case AIO_KIND_QUEUE:
        return "Queue";
    case AIO_KIND_BARRIER:
        return "Barrier";
    case AIO_KIND_GATHER:
        return "gather";
    case AIO_KIND_SHIELD:
        return "shield";
    case AIO_KIND_TIMEOUT:
        return "timeout";
    case AIO_KIND_TASKGROUP:
        return "TaskGroup";
    case AIO_KIND_WAIT:
        return "wait";
    case AIO_KIND_EXECUTOR:
        return "executor";
    case AIO_KIND_IO:
        return "I/O";
    case AIO_KIND_OTHER:
        return "awaitable";
    case AIO_KIND_THREAD_LOCK:
        return "threading lock";
    case AIO_KIND_CFUTURE:
        return "concurrent future";
    case AIO_KIND_THREAD_EVENT:
        return "threading.Event";
    case AIO_KIND_THREAD_CONDITION:
        return "threading.Condition";
    case AIO_KIND_THREAD_QUEUE:
        return "queue";
    case AIO_KIND_NONE:
    case AIO_KIND_COUNT:
        break;
    }
    return "-";
}

/* op: the queue method the task is in ("get", "put"), or NULL. */
static void out_resource_phrase(sbuf *b, const aio_resource *r, const char *op, bool full) {
    const char *type = r->type[0] ? r->type : out_kind_word(r->kind);
    bool id_said = true;
    bool detail_said = false;
    switch (r->kind) {
    case AIO_KIND_SLEEP:
    case AIO_KIND_TIMEOUT:
        /* The timer's future is an implementation detail: the time is the fact. */
        sbuf_adds(b, out_kind_word(r->kind));
        out_timing(b, r);
        id_said = false;
        break;
    case AIO_KIND_GATHER:
    case AIO_KIND_TASKGROUP:
        sbuf_printf(b, "%s of %zu", out_kind_word(r->kind), (size_t)r->members.len);
        id_said = false;
        break;
    case AIO_KIND_WAIT: {
        static const char *const whom[] = {[AIO_WAIT_ALL] = "all",
                                           [AIO_WAIT_FIRST] = "the first",
                                           [AIO_WAIT_ERROR] = "an error or all"};
        sbuf_printf(b, "wait for %s of %zu", whom[r->wait_when], (size_t)r->members.len);
        out_timing(b, r);
        id_said = false;
        detail_said = true;
        break;
    }
    case AIO_KIND_SHIELD:
    case AIO_KIND_EXECUTOR:
        sbuf_adds(b, out_kind_word(r->kind));
        id_said = false;
        break;
    case AIO_KIND_IO:
        sbuf_adds(b, out_kind_word(r->kind));
        if (r->detail[0]) {
            sbuf_addc(b, ' ');
            out_clean(b, r->detail);
        }
        detail_said = true;
        id_said = false;
        break;
    case AIO_KIND_OTHER:
        out_clean(b, type);
        id_said = false;
        break;
    case AIO_KIND_QUEUE:
        out_clean(b, type);
        if (op) {
            sbuf_printf(b, ".%s", op);
        }
        sbuf_printf(b, " 0x%" PRIx64, r->id);
        break;
    default:
        out_clean(b, type);
        sbuf_printf(b, " 0x%" PRIx64, r->id);
        break;
    }
    if (full && (!id_said || (!detail_said && r->detail[0]))) {
        sbuf_adds(b, " (");
        if (!id_said) {
            sbuf_printf(b, "0x%" PRIx64 "%s", r->id, !detail_said && r->detail[0] ? ", " : "");
        }
        if (!detail_said) {
            out_clean(b, r->detail);
        }
        sbuf_addc(b, ')');
    }
}

void out_resource_label(sbuf *b, const aio_resource *r, bool with_detail) {
    out_resource_phrase(b, r, NULL, with_detail);
}

/* The queue method a task waits in, from its innermost frame ("Queue.get"). */
static const char *out_queue_op(const aio_task *t) {
    static const char *const ops[] = {"get", "put", "join"};
    if (!t->frames.len) {
        return NULL;
    }
    const aio_frame *f = VEC_AT(&t->frames, aio_frame, 0);
    const char *dot = aio_frame_function(f) ? strrchr(aio_frame_function(f), '.') : NULL;
    for (size_t i = 0; dot && i < ARRAY_LEN(ops); i++) {
        if (strcmp(dot + 1, ops[i]) == 0) {
            return ops[i];
        }
    }
    return NULL;
}

void out_waits_phrase(sbuf *b, const out_index *ix, const aio_task *t, bool full) {
    if (t->waits_kind == AIO_KIND_NONE) {
        if (t->running_thread) {
            sbuf_printf(b, "running in thread %" PRId64, t->running_thread);
        } else {
            sbuf_addc(b, '-');
        }
        return;
    }
    if (t->waits_kind == AIO_KIND_TASK) {
        const aio_task *other = out_find_task(ix, t->waits_on);
        if (!other) {
            sbuf_printf(b, "task 0x%" PRIx64 "%s", t->waits_on, full ? " (not in the model)" : "");
        } else if (full) {
            out_task_ref_id(b, other);
            sbuf_printf(b, ", %s", aio_state_name(other->state));
        } else {
            out_task_ref(b, other);
        }
        return;
    }
    const aio_resource *r = out_find_resource(ix, t->waits_on);
    if (t->waits_kind == AIO_KIND_OTHER && t->waits_type && t->waits_type[0]) {
        out_clean(b, t->waits_type);
        if (full && t->waits_on) {
            sbuf_printf(b, " 0x%" PRIx64, t->waits_on);
        }
    } else if (r) {
        out_resource_phrase(b, r, t->waits_kind == AIO_KIND_QUEUE ? out_queue_op(t) : NULL, full);
    } else {
        /* The engine named the kind but kept no resource: say what we know. */
        out_clean(b,
                  t->waits_type && t->waits_type[0] ? t->waits_type : out_kind_word(t->waits_kind));
        if (t->waits_on) {
            sbuf_printf(b, " 0x%" PRIx64, t->waits_on);
        }
    }
}

bool out_await_next(const aio_task *t, size_t *i, uint64_t *id) {
    while (*i <= t->awaits.len) {
        size_t k = (*i)++;
        uint64_t v = k == 0 ? t->waits_on : *VEC_AT(&t->awaits, uint64_t, k - 1);
        if (v && (k == 0 || v != t->waits_on)) {
            *id = v;
            return true;
        }
    }
    return false;
}

size_t out_width(const char *s) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        n += (*p & 0xc0) != 0x80;
    }
    return n;
}

void out_header_text(out_writer *w, const aio_model *m) {
    size_t nt = m->tasks.len, nl = m->loops.len;
    out_printf(w, "%zu task%s in %zu loop%s", nt, nt == 1 ? "" : "s", nl, nl == 1 ? "" : "s");
    if (m->tasks_found_by) {
        out_printf(w, " (found by %s)", m->tasks_found_by);
    }
    out_puts(w, "\n");
    for (size_t i = 0; i < m->warnings.len; i++) {
        out_printf(w, "warning: %s\n", *VEC_AT(&m->warnings, char *, i));
    }
}

/* `tree`: the await tree from the roots down, each task's frames outer first,
 * then what it awaits. An explicit stack, each task in full once, cycles
 * marked and depth cut: no await graph makes it loop, recurse or refuse. */
#include "out.h"

#include <inttypes.h>
#include <string.h>

/* Deepest indentation printed; below it a subtree is summarised in one line.
 * Each level is four columns, so this is already wider than any screen. */
#define OUT_TREE_DEPTH_MAX 64

enum { OUT_UNSEEN, OUT_PRINTED, OUT_CUT };

typedef enum out_item_kind {
    OUT_ITEM_FRAME,   /* val: index into the task's frames */
    OUT_ITEM_TRUNC,   /* the chain was cut: its inner frames are missing */
    OUT_ITEM_TASK,    /* val: position in m->tasks */
    OUT_ITEM_RES,     /* val: position in m->resources */
    OUT_ITEM_MISSING, /* val: an id the model does not hold */
} out_item_kind;

typedef struct out_item {
    out_item_kind kind;
    uint64_t val;
} out_item;

/* One node whose children are being printed. */
typedef struct out_level {
    bool is_task;
    size_t pos;   /* in m->tasks or m->resources */
    size_t items; /* its children: pool[items .. items + nitems) */
    size_t nitems;
    size_t next;       /* the next child to print */
    size_t prefix_len; /* bytes of the prefix its children's lines start with */
    int depth;
} out_level;

typedef struct out_tree {
    out_writer *w;
    const out_index *ix;
    const aio_model *m;
    unsigned char *state; /* per task: OUT_UNSEEN, OUT_PRINTED, OUT_CUT */
    bool *on_path;        /* per task: an ancestor of the line being printed */
    vec pool;             /* out_item: children of every level on the stack */
    vec stack;            /* out_level */
    vec work;             /* size_t: tasks to mark in a cut subtree */
    sbuf prefix;
    sbuf line;
    bool oom;
    const ana_result *diag; /* findings to mark on their tasks, or NULL */
} out_tree;

static void out_item_add(out_tree *tr, out_item_kind kind, uint64_t val) {
    out_item *it = vec_push(&tr->pool);
    if (!it) {
        tr->oom = true;
        return;
    }
    it->kind = kind;
    it->val = val;
}

/* What a task awaits, as items: the resource or task it waits on, then the
 * rest of its awaits. A task that stands behind a listed resource (a gather's
 * child) is shown under that resource only. */
static void out_await_items(out_tree *tr, const aio_task *t) {
    size_t start = tr->pool.len;
    bool any_members = false, any_task = false;
    uint64_t id;
    for (size_t i = 0; out_await_next(t, &i, &id);) {
        size_t pos = out_task_pos(tr->ix, id);
        if (pos != SIZE_MAX) {
            out_item_add(tr, OUT_ITEM_TASK, pos);
            any_task = true;
            continue;
        }
        size_t rpos = out_resource_pos(tr->ix, id);
        if (rpos != SIZE_MAX) {
            out_item_add(tr, OUT_ITEM_RES, rpos);
            any_members = any_members || VEC_AT(&tr->m->resources, aio_resource, rpos)->members.len;
        } else {
            out_item_add(tr, OUT_ITEM_MISSING, id);
        }
    }
    if (!any_members || !any_task || tr->oom) {
        return;
    }
    u64set members;
    u64set_init(&members);
    out_item *items = VEC_AT(&tr->pool, out_item, 0);
    for (size_t i = start; i < tr->pool.len; i++) {
        if (items[i].kind == OUT_ITEM_RES) {
            const aio_resource *r = VEC_AT(&tr->m->resources, aio_resource, items[i].val);
            for (size_t k = 0; k < r->members.len; k++) {
                if (u64set_add(&members, *VEC_AT(&r->members, uint64_t, k)) < 0) {
                    tr->oom = true;
                }
            }
        }
    }
    size_t keep = start;
    for (size_t i = start; i < tr->pool.len; i++) {
        if (items[i].kind == OUT_ITEM_TASK &&
            u64set_has(&members, VEC_AT(&tr->m->tasks, aio_task, items[i].val)->id)) {
            continue;
        }
        items[keep++] = items[i];
    }
    tr->pool.len = keep;
    u64set_free(&members);
}

static void out_task_items(out_tree *tr, const aio_task *t) {
    /* Outer frame first, as a call tree reads. */
    for (size_t k = t->frames.len; k-- > 0;) {
        out_item_add(tr, OUT_ITEM_FRAME, k);
    }
    if (t->truncated) {
        out_item_add(tr, OUT_ITEM_TRUNC, 0);
    }
    out_await_items(tr, t);
}

static void out_res_items(out_tree *tr, const aio_resource *r) {
    for (size_t k = 0; k < r->members.len; k++) {
        uint64_t id = *VEC_AT(&r->members, uint64_t, k);
        size_t pos = out_task_pos(tr->ix, id);
        if (pos != SIZE_MAX) {
            out_item_add(tr, OUT_ITEM_TASK, pos);
        } else {
            out_item_add(tr, OUT_ITEM_MISSING, id);
        }
    }
}

static void out_task_line(sbuf *b, const aio_task *t, const ana_result *diag) {
    out_task_ref_id(b, t);
    if (t->running_thread) {
        sbuf_printf(b, " [running in thread %" PRId64 "]", t->running_thread);
    } else if (t->state != AIO_STATE_PENDING) {
        sbuf_printf(b, " [%s]", aio_state_name(t->state));
    }
    out_mark_task(b, t->id, diag);
}

/* Marks every task below a cut node that no line has shown yet, so the
 * extra-roots pass does not print them as roots; returns how many. */
static size_t out_mark_cut(out_tree *tr, size_t from, size_t n) {
    size_t count = 0;
    tr->work.len = 0;
    const out_item *items = VEC_AT(&tr->pool, out_item, 0);
    for (size_t i = from; i < from + n; i++) {
        if (items[i].kind == OUT_ITEM_TASK) {
            size_t *p = vec_push(&tr->work);
            if (!p) {
                tr->oom = true;
                return count;
            }
            *p = (size_t)items[i].val;
        } else if (items[i].kind == OUT_ITEM_RES) {
            const aio_resource *r = VEC_AT(&tr->m->resources, aio_resource, items[i].val);
            for (size_t k = 0; k < r->members.len; k++) {
                size_t pos = out_task_pos(tr->ix, *VEC_AT(&r->members, uint64_t, k));
                size_t *p = pos == SIZE_MAX ? NULL : vec_push(&tr->work);
                if (p) {
                    *p = pos;
                } else if (pos != SIZE_MAX) {
                    tr->oom = true;
                    return count;
                }
            }
        }
    }
    while (tr->work.len) {
        size_t pos = *VEC_AT(&tr->work, size_t, --tr->work.len);
        if (tr->state[pos] != OUT_UNSEEN) {
            continue;
        }
        tr->state[pos] = OUT_CUT;
        count++;
        const aio_task *t = VEC_AT(&tr->m->tasks, aio_task, pos);
        uint64_t id;
        for (size_t i = 0; out_await_next(t, &i, &id);) {
            size_t tp = out_task_pos(tr->ix, id);
            const aio_resource *r = tp == SIZE_MAX ? out_find_resource(tr->ix, id) : NULL;
            size_t nk = r ? r->members.len : (tp != SIZE_MAX);
            for (size_t k = 0; k < nk; k++) {
                size_t p = r ? out_task_pos(tr->ix, *VEC_AT(&r->members, uint64_t, k)) : tp;
                if (p == SIZE_MAX || tr->state[p] != OUT_UNSEEN) {
                    continue;
                }
                size_t *slot = vec_push(&tr->work);
                if (!slot) {
                    tr->oom = true;
                    return count;
                }
                *slot = p;
            }
        }
    }
    return count;
}

/* Starts a line with the first len bytes of the current prefix. */
static void out_line_start(out_tree *tr, size_t len) {
    sbuf_reset(&tr->line);
    if (tr->prefix.data && len <= tr->prefix.len) {
        sbuf_add(&tr->line, tr->prefix.data, len);
    }
}

/* Prints the line for one child; returns true when the child has children of
 * its own, which out_push then shows (or cuts). */
static bool out_child_line(out_tree *tr, const out_level *lv, const out_item *it, bool last) {
    const aio_model *m = tr->m;
    sbuf *b = &tr->line;
    out_line_start(tr, lv->prefix_len);
    sbuf_adds(b, last ? "└── " : "├── ");
    bool has_children = false;
    const aio_task *parent = lv->is_task ? VEC_AT(&m->tasks, aio_task, lv->pos) : NULL;
    switch (it->kind) {
    case OUT_ITEM_FRAME:
        out_frame_short(b, VEC_AT(&parent->frames, aio_frame, it->val));
        break;
    case OUT_ITEM_TRUNC:
        sbuf_adds(b, "… inner frames missing (the chain is damaged or too deep)");
        break;
    case OUT_ITEM_TASK: {
        const aio_task *t = VEC_AT(&m->tasks, aio_task, it->val);
        if (tr->state[it->val] == OUT_PRINTED) {
            sbuf_adds(b, tr->on_path[it->val] ? "↺ cycle back to " : "↺ ");
            out_task_ref_id(b, t);
            if (!tr->on_path[it->val]) {
                sbuf_adds(b, " — see above");
            }
        } else {
            out_task_line(b, t, tr->diag);
            tr->state[it->val] = OUT_PRINTED;
            has_children = true;
        }
        break;
    }
    case OUT_ITEM_RES: {
        const aio_resource *r = VEC_AT(&m->resources, aio_resource, it->val);
        sbuf_adds(b, "⏳ ");
        if (parent && parent->waits_on == r->id) {
            out_waits_phrase(b, tr->ix, parent, true);
        } else {
            out_resource_label(b, r, true);
        }
        has_children = r->members.len > 0;
        break;
    }
    case OUT_ITEM_MISSING:
        sbuf_printf(b, "? 0x%" PRIx64 " (not in the model)", it->val);
        break;
    }
    sbuf_addc(b, '\n');
    out_puts(tr->w, sbuf_str(b));
    return has_children;
}

/* Opens a level for a node just printed: its children go on the pool, and
 * the level goes on the stack, unless it is too deep: then one line says
 * what was cut. seg is what the node's children add to the prefix. */
static void out_push(out_tree *tr, bool is_task, size_t pos, int depth, const char *seg) {
    size_t parent_len =
        tr->stack.len ? VEC_AT(&tr->stack, out_level, tr->stack.len - 1)->prefix_len : 0;
    size_t from = tr->pool.len;
    if (is_task) {
        out_task_items(tr, VEC_AT(&tr->m->tasks, aio_task, pos));
    } else {
        out_res_items(tr, VEC_AT(&tr->m->resources, aio_resource, pos));
    }
    size_t n = tr->pool.len - from;
    if (tr->oom || n == 0) {
        tr->pool.len = from;
        return;
    }
    tr->prefix.len = parent_len;
    sbuf_adds(&tr->prefix, seg);
    if (depth > OUT_TREE_DEPTH_MAX) {
        size_t cut = out_mark_cut(tr, from, n);
        sbuf *b = &tr->line;
        out_line_start(tr, tr->prefix.len);
        if (cut) {
            sbuf_printf(b,
                        "└── … cut at depth %d: %zu more task%s below (`tasks` lists every one)\n",
                        OUT_TREE_DEPTH_MAX, cut, cut == 1 ? "" : "s");
        } else {
            sbuf_printf(b, "└── … cut at depth %d: the tasks below are shown elsewhere\n",
                        OUT_TREE_DEPTH_MAX);
        }
        out_puts(tr->w, sbuf_str(b));
        tr->pool.len = from;
        return;
    }
    out_level *lv = vec_push(&tr->stack);
    if (!lv) {
        tr->oom = true;
        tr->pool.len = from;
        return;
    }
    lv->is_task = is_task;
    lv->pos = pos;
    lv->items = from;
    lv->nitems = n;
    lv->prefix_len = tr->prefix.len;
    lv->depth = depth;
    if (is_task) {
        tr->on_path[pos] = true;
    }
}

/* One tree: the root task's line, then its levels until the stack empties. */
static void out_root(out_tree *tr, size_t pos) {
    sbuf *b = &tr->line;
    sbuf_reset(b);
    out_task_line(b, VEC_AT(&tr->m->tasks, aio_task, pos), tr->diag);
    sbuf_addc(b, '\n');
    out_puts(tr->w, sbuf_str(b));
    tr->state[pos] = OUT_PRINTED;
    tr->prefix.len = 0;
    out_push(tr, true, pos, 1, "");
    while (tr->stack.len && !tr->oom && !tr->prefix.oom && !tr->line.oom && !tr->w->failed) {
        out_level *lv = VEC_AT(&tr->stack, out_level, tr->stack.len - 1);
        if (lv->next == lv->nitems) {
            if (lv->is_task) {
                tr->on_path[lv->pos] = false;
            }
            tr->pool.len = lv->items;
            tr->stack.len--;
            continue;
        }
        out_item it = *VEC_AT(&tr->pool, out_item, lv->items + lv->next);
        lv->next++;
        bool last = lv->next == lv->nitems;
        int depth = lv->depth;
        if (out_child_line(tr, lv, &it, last)) {
            /* out_push may move the stack: lv is not used after this. */
            out_push(tr, it.kind == OUT_ITEM_TASK, (size_t)it.val, depth + 1,
                     last ? "    " : "│   ");
        }
    }
    /* Left by a failure: clear the path marks for the next tree. */
    while (tr->stack.len) {
        out_level *lv = VEC_AT(&tr->stack, out_level, --tr->stack.len);
        if (lv->is_task) {
            tr->on_path[lv->pos] = false;
        }
    }
    tr->pool.len = 0;
}

void out_tree_text(out_writer *w, const aio_model *m, const ana_result *diag) {
    out_header_text(w, m);
    size_t n = m->tasks.len;
    if (!n) {
        return;
    }
    out_index ix;
    if (!out_index_build(&ix, m, w)) {
        return;
    }
    out_tree tr = {.w = w, .ix = &ix, .m = m, .diag = diag};
    tr.state = util_calloc(n, 1);
    tr.on_path = util_calloc(n, sizeof *tr.on_path);
    vec_init(&tr.pool, sizeof(out_item));
    vec_init(&tr.stack, sizeof(out_level));
    vec_init(&tr.work, sizeof(size_t));
    sbuf_init(&tr.prefix);
    sbuf_init(&tr.line);
    tr.oom = !tr.state || !tr.on_path;
    out_puts(w, "\n");
    /* Roots: tasks nobody awaits. Then whatever is left: tasks in cycles,
     * or awaited only by tasks the model lacks, each group once. */
    for (int pass = 0; pass < 2 && !tr.oom; pass++) {
        for (size_t i = 0; i < n && !tr.oom && !w->failed; i++) {
            const aio_task *t = VEC_AT(&m->tasks, aio_task, i);
            bool root = pass == 0 ? t->awaited_by.len == 0 && tr.state[i] != OUT_PRINTED
                                  : tr.state[i] == OUT_UNSEEN;
            if (root) {
                out_root(&tr, i);
            }
        }
    }
    if (tr.oom || tr.prefix.oom || tr.line.oom) {
        w->failed = true;
    }
    util_free(tr.state);
    util_free(tr.on_path);
    vec_free(&tr.pool);
    vec_free(&tr.stack);
    vec_free(&tr.work);
    sbuf_free(&tr.prefix);
    sbuf_free(&tr.line);
    out_index_free(&ix);
}

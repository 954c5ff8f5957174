/* `graph`: the wait-for graph for other tools. Task nodes (boxes) point at
 * the task or resource they wait on; resources (ellipses) point, dashed, at
 * the tasks they stand for. The nodes and edges of each deadlock (the cycle
 * diagnoses) are drawn in red, boxed together in DOT; other findings' nodes
 * in orange. DOT and Mermaid here (the CLI turns DOT into SVG); JSON is the
 * document. */
#include "out.h"

#include <inttypes.h>
#include <string.h>

/* One rendering: where it goes, and which nodes belong to which deadlock,
 * so an edge inside a cycle is drawn as part of it. Mermaid styles edges by
 * their position in the text, so those are counted and kept. */
typedef struct graph_ctx {
    out_writer *w;
    bool dot;
    u64map deadlock; /* node id -> number of its deadlock diagnosis (from 1) */
    size_t links;    /* Mermaid edges written so far */
    vec red_links;   /* uint64_t positions of the edges inside a deadlock */
    bool oom;
} graph_ctx;

/* Threads share the deadlock map with tasks and resources: their native
 * ids, with the top bit set, can be no object's address. */
#define OUT_THREAD_KEY(native) ((uint64_t)(native) | (1ull << 63))

/* A node's name: "0x.." (DOT) or t0x.., r0x.. (Mermaid) for a task or a
 * resource; "thread N" or hN for a thread (kind 'h', id its native id). */
static void out_graph_ref(graph_ctx *g, char kind, uint64_t id) {
    if (kind == 'h') {
        out_printf(g->w, g->dot ? "\"thread %" PRIu64 "\"" : "h%" PRIu64, id);
    } else if (g->dot) {
        out_printf(g->w, "\"0x%" PRIx64 "\"", id);
    } else {
        out_printf(g->w, "%c0x%" PRIx64, kind, id);
    }
}

/* An edge from (a task 't', a resource 'r' or a thread 'h') to to; Mermaid
 * draws it with arrow ("-->", "-.->", "-- held by -->"). */
static void out_graph_edge(graph_ctx *g, char from_kind, uint64_t from, char to_kind, uint64_t to,
                           const char *dot_attrs, const char *arrow) {
    uint64_t a = 0, b = 0;
    uint64_t fk = from_kind == 'h' ? OUT_THREAD_KEY(from) : from;
    uint64_t tk = to_kind == 'h' ? OUT_THREAD_KEY(to) : to;
    bool red = u64map_get(&g->deadlock, fk, &a) && u64map_get(&g->deadlock, tk, &b) && a == b;
    if (g->dot || from_kind == 'h' || to_kind == 'h') {
        out_puts(g->w, "    ");
        out_graph_ref(g, from_kind, from);
        out_puts(g->w, g->dot ? " -> " : " ");
        if (!g->dot) {
            out_printf(g->w, "%s ", arrow);
        }
        out_graph_ref(g, to_kind, to);
    }
    if (g->dot) {
        if (dot_attrs[0] || red) {
            out_printf(g->w, " [%s%s%s]", dot_attrs, dot_attrs[0] && red ? ", " : "",
                       red ? "color=red, penwidth=2.5" : "");
        }
        out_puts(g->w, ";\n");
        return;
    }
    if (from_kind == 'h' || to_kind == 'h') {
        out_puts(g->w, "\n");
    } else {
        out_printf(g->w, "    %c0x%" PRIx64 " %s %c0x%" PRIx64 "\n", from_kind, from, arrow,
                   to_kind, to);
    }
    if (red && !u64vec_push(&g->red_links, g->links)) {
        g->oom = true;
    }
    g->links++;
}

static bool out_done_task(const aio_task *t) {
    return t->state == AIO_STATE_DONE || t->state == AIO_STATE_CANCELLED;
}

/* The label of a task node as lines separated by '\n' (names cleaned, so
 * every '\n' left is ours): its name, id, innermost frame and state. */
static void out_task_label(sbuf *b, const aio_task *t) {
    out_task_ref(b, t);
    if (t->name) {
        sbuf_printf(b, "\n0x%" PRIx64, t->id);
    }
    if (t->frames.len) {
        sbuf_addc(b, '\n');
        out_frame_short(b, VEC_AT(&t->frames, aio_frame, 0));
    }
    if (t->state != AIO_STATE_PENDING) {
        sbuf_printf(b, "\n[%s]", aio_state_name(t->state));
    }
}

static void out_res_label(sbuf *b, const aio_resource *r) {
    sbuf_adds(b, aio_kind_name(r->kind));
    if (r->type[0]) {
        sbuf_addc(b, ' ');
        out_clean(b, r->type);
    }
    sbuf_printf(b, "\n0x%" PRIx64, r->id);
    if (r->detail[0]) {
        sbuf_addc(b, '\n');
        out_clean(b, r->detail);
    }
}

/* DOT double-quoted string body: quotes and backslashes escaped (so no
 * "\l" or "\N" can appear by accident), our line breaks as \n. */
static void out_dot_escape(out_writer *w, const char *s, sbuf *tmp) {
    sbuf_reset(tmp);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            sbuf_addc(tmp, '\\');
            sbuf_addc(tmp, *p);
        } else if (*p == '\n') {
            sbuf_adds(tmp, "\\n");
        } else {
            sbuf_addc(tmp, *p);
        }
    }
    out_puts(w, sbuf_str(tmp));
}

/* Mermaid quoted label: what its parser could take for syntax becomes an
 * entity code; our line breaks become <br/>. */
static void out_mermaid_escape(out_writer *w, const char *s, sbuf *tmp) {
    sbuf_reset(tmp);
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '\n':
            sbuf_adds(tmp, "<br/>");
            break;
        case '"':
            sbuf_adds(tmp, "#quot;");
            break;
        case '<':
            sbuf_adds(tmp, "#lt;");
            break;
        case '>':
            sbuf_adds(tmp, "#gt;");
            break;
        case '&':
            sbuf_adds(tmp, "#amp;");
            break;
        case '#':
        case '[':
        case ']':
        case '(':
        case ')':
        case '{':
        case '}':
        case '|':
        case ';':
        case '`':
            sbuf_printf(tmp, "#%d;", *p);
            break;
        default:
            sbuf_addc(tmp, *p);
        }
    }
    out_puts(w, sbuf_str(tmp));
}

/* The edges out of task t: to what it waits on and to the rest of what it
 * awaits. Ids the model lacks are left out (the text views name them). */
static void out_task_edges(graph_ctx *g, const out_index *ix, const aio_task *t) {
    uint64_t id;
    for (size_t i = 0; out_await_next(t, &i, &id);) {
        bool is_task = out_find_task(ix, id) != NULL;
        if (!is_task && !out_find_resource(ix, id)) {
            continue;
        }
        out_graph_edge(g, 't', t->id, is_task ? 't' : 'r', id, "", "-->");
    }
}

static void out_member_edges(graph_ctx *g, const out_index *ix, const aio_resource *r) {
    for (size_t k = 0; k < r->members.len; k++) {
        uint64_t id = *VEC_AT(&r->members, uint64_t, k);
        if (!out_find_task(ix, id)) {
            continue;
        }
        out_graph_edge(g, 'r', r->id, 't', id, "style=dashed", "-.->");
    }
}

/* The rest of the wait-for graph: a lock points at its holders, an event or
 * queue nobody else references at the tasks that could wake it. */
static void out_hold_edges(graph_ctx *g, const out_index *ix, const aio_resource *r) {
    const vec *lists[2] = {&r->holders, r->external_refs ? NULL : &r->resolvers};
    static const char *const dot_attrs[2] = {"label=\"held by\"",
                                             "label=\"could wake\", style=dotted"};
    static const char *const arrows[2] = {"-- held by -->", "-- could wake -->"};
    for (int l = 0; l < 2; l++) {
        for (size_t k = 0; lists[l] && k < lists[l]->len; k++) {
            uint64_t id = *VEC_AT(lists[l], uint64_t, k);
            if (!out_find_task(ix, id)) {
                continue;
            }
            out_graph_edge(g, 'r', r->id, 't', id, dot_attrs[l], arrows[l]);
        }
    }
}

/* A thread is drawn when it is in the graph: it waits on a resource of
 * the model, or holds or runs one. */
static bool out_graph_thread_shown(const aio_model *m, const out_index *ix, const aio_thread *th) {
    if (th->waits_kind != AIO_KIND_NONE && out_find_resource(ix, th->waits_on)) {
        return true;
    }
    for (size_t i = 0; i < m->resources.len; i++) {
        if (u64vec_has(&VEC_AT(&m->resources, aio_resource, i)->thread_holders,
                       (uint64_t)th->native_id)) {
            return true;
        }
    }
    return false;
}

/* Threads' edges: a thread at what it waits on (dotted with a timeout),
 * a threading lock at its holders, a concurrent future at the worker
 * running it, an executor future at the concurrent future it mirrors. */
static void out_thread_edges(graph_ctx *g, const aio_model *m, const out_index *ix) {
    for (size_t i = 0; i < m->threads.len; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        if (th->waits_kind != AIO_KIND_NONE && out_find_resource(ix, th->waits_on)) {
            out_graph_edge(g, 'h', (uint64_t)th->native_id, 'r', th->waits_on,
                           th->waits_timeout ? "label=\"timeout\", style=dotted" : "",
                           th->waits_timeout ? "-. timeout .->" : "-->");
        }
    }
    for (size_t j = 0; j < m->resources.len; j++) {
        const aio_resource *r = VEC_AT(&m->resources, aio_resource, j);
        bool runs = r->kind == AIO_KIND_CFUTURE;
        for (size_t k = 0; k < r->thread_holders.len; k++) {
            out_graph_edge(g, 'r', r->id, 'h', *VEC_AT(&r->thread_holders, uint64_t, k),
                           runs ? "label=\"run by\"" : "label=\"held by\"",
                           runs ? "-- run by -->" : "-- held by -->");
        }
        if (r->chained && out_find_resource(ix, r->chained)) {
            out_graph_edge(g, 'r', r->id, 'r', r->chained, "label=\"mirrors\"", "-- mirrors -->");
        }
    }
}

/* Each deadlock's nodes by number; false when out of memory. */
static bool out_graph_deadlocks(graph_ctx *g, const ana_result *diag) {
    for (size_t i = 0; diag && i < diag->diagnoses.len; i++) {
        const ana_diagnosis *d = VEC_AT(&diag->diagnoses, ana_diagnosis, i);
        if (!ana_kind_is_deadlock(d->kind)) {
            continue;
        }
        const vec *ids[2] = {&d->tasks, &d->resources};
        for (int l = 0; l < 2; l++) {
            for (size_t k = 0; k < ids[l]->len; k++) {
                if (!u64map_put(&g->deadlock, *VEC_AT(ids[l], uint64_t, k), i + 1)) {
                    return false;
                }
            }
        }
        for (size_t k = 0; k < d->threads.len; k++) {
            if (!u64map_put(&g->deadlock, OUT_THREAD_KEY(*VEC_AT(&d->threads, uint64_t, k)),
                            i + 1)) {
                return false;
            }
        }
    }
    return true;
}

/* Nodes named in findings: a deadlock's in red (in DOT also boxed
 * together, labelled with its kind), the other findings' in orange; each
 * finding's kind in a legend comment. */
static void out_mark_findings(graph_ctx *g, const ana_result *diag) {
    out_writer *w = g->w;
    bool dot = g->dot;
    if (!dot && diag && diag->diagnoses.len) {
        out_puts(w, "    classDef deadlock fill:#fdd,stroke:#d00,stroke-width:3px\n"
                    "    classDef finding stroke:#e80,stroke-width:3px\n");
    }
    for (size_t i = 0; diag && i < diag->diagnoses.len; i++) {
        const ana_diagnosis *d = VEC_AT(&diag->diagnoses, ana_diagnosis, i);
        bool deadlock = ana_kind_is_deadlock(d->kind);
        out_printf(w, dot ? "    // finding %zu: %s\n" : "    %%%% finding %zu: %s\n", i + 1,
                   ana_kind_name(d->kind));
        if (dot && deadlock) {
            out_printf(w,
                       "    subgraph cluster_finding_%zu {\n        label=\"deadlock: %s\";\n"
                       "        color=red;\n        fontcolor=red;\n        style=dashed;\n",
                       i + 1, ana_kind_name(d->kind));
        }
        const vec *ids[2] = {&d->tasks, &d->resources};
        for (int l = 0; l < 2; l++) {
            for (size_t k = 0; k < ids[l]->len; k++) {
                uint64_t id = *VEC_AT(ids[l], uint64_t, k), in = 0;
                /* A node of a deadlock keeps the deadlock's colour when
                 * another finding (all-asleep) names it too. */
                if (!deadlock && u64map_get(&g->deadlock, id, &in)) {
                    continue;
                }
                if (dot) {
                    out_printf(w,
                               deadlock ? "        \"0x%" PRIx64 "\" [color=red, penwidth=3, "
                                          "style=filled, fillcolor=\"#ffdddd\"];\n"
                                        : "    \"0x%" PRIx64 "\" [color=orange, penwidth=2];\n",
                               id);
                } else {
                    out_printf(w, "    class %c0x%" PRIx64 " %s\n", l ? 'r' : 't', id,
                               deadlock ? "deadlock" : "finding");
                }
            }
        }
        for (size_t k = 0; deadlock && k < d->threads.len; k++) {
            uint64_t n = *VEC_AT(&d->threads, uint64_t, k);
            if (dot) {
                out_printf(w,
                           "        \"thread %" PRIu64 "\" [color=red, penwidth=3, "
                           "style=filled, fillcolor=\"#ffdddd\"];\n",
                           n);
            } else {
                out_printf(w, "    class h%" PRIu64 " deadlock\n", n);
            }
        }
        if (dot && deadlock) {
            out_puts(w, "    }\n");
        }
    }
    if (!dot && g->red_links.len) {
        out_puts(w, "    linkStyle ");
        for (size_t k = 0; k < g->red_links.len; k++) {
            out_printf(w, "%s%" PRIu64, k ? "," : "", *VEC_AT(&g->red_links, uint64_t, k));
        }
        out_puts(w, " stroke:#d00,stroke-width:3px\n");
    }
}

/* Threads as hexagons: "thread N 'name'", then what they run or wait on. */
static void out_graph_thread_nodes(out_writer *w, const aio_model *m, const out_index *ix, bool dot,
                                   sbuf *label, sbuf *tmp) {
    for (size_t i = 0; i < m->threads.len; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        if (!out_graph_thread_shown(m, ix, th)) {
            continue;
        }
        sbuf_reset(label);
        sbuf_printf(label, "thread %" PRId64, th->native_id);
        if (th->name[0]) {
            sbuf_adds(label, " '");
            out_clean(label, th->name);
            sbuf_adds(label, "'");
        }
        if (th->work_item) {
            sbuf_adds(label, "\nwork: ");
            out_clean(label, th->work_fn[0] ? th->work_fn : "?");
            sbuf_adds(label, "()");
        }
        if (th->frames.len) {
            sbuf_addc(label, '\n');
            out_frame_short(label, VEC_AT(&th->frames, aio_frame, 0));
        }
        if (dot) {
            out_printf(w, "    \"thread %" PRId64 "\" [shape=hexagon, label=\"", th->native_id);
            out_dot_escape(w, sbuf_str(label), tmp);
            out_puts(w, "\"];\n");
        } else {
            out_printf(w, "    h%" PRId64 "{{\"", th->native_id);
            out_mermaid_escape(w, sbuf_str(label), tmp);
            out_puts(w, "\"}}\n");
        }
    }
}

static void out_graph_nodes(out_writer *w, const aio_model *m, bool dot, sbuf *label, sbuf *tmp) {
    for (size_t i = 0; i < m->tasks.len; i++) {
        const aio_task *t = VEC_AT(&m->tasks, aio_task, i);
        sbuf_reset(label);
        out_task_label(label, t);
        if (dot) {
            out_printf(w, "    \"0x%" PRIx64 "\" [shape=box, label=\"", t->id);
            out_dot_escape(w, sbuf_str(label), tmp);
            out_puts(w, out_done_task(t) ? "\", style=dashed];\n" : "\"];\n");
        } else {
            out_printf(w, "    t0x%" PRIx64 "[\"", t->id);
            out_mermaid_escape(w, sbuf_str(label), tmp);
            out_puts(w, out_done_task(t) ? "\"]:::done\n" : "\"]\n");
        }
    }
    for (size_t i = 0; i < m->resources.len; i++) {
        const aio_resource *r = VEC_AT(&m->resources, aio_resource, i);
        sbuf_reset(label);
        out_res_label(label, r);
        if (dot) {
            out_printf(w, "    \"0x%" PRIx64 "\" [shape=ellipse, label=\"", r->id);
            out_dot_escape(w, sbuf_str(label), tmp);
            out_puts(w, "\"];\n");
        } else {
            out_printf(w, "    r0x%" PRIx64 "([\"", r->id);
            out_mermaid_escape(w, sbuf_str(label), tmp);
            out_puts(w, "\"])\n");
        }
    }
}

void out_graph(out_writer *w, const aio_model *m, snarl_format fmt, const ana_result *diag) {
    if (fmt == SNARL_FORMAT_JSON || fmt == SNARL_FORMAT_TEXT) {
        /* The document carries the same nodes and edges (awaits, members). */
        out_document_json(w, m, NULL, diag);
        return;
    }
    bool dot = fmt == SNARL_FORMAT_DOT;
    out_index ix;
    if (!out_index_build(&ix, m, w)) {
        return;
    }
    graph_ctx g = {.w = w, .dot = dot};
    u64map_init(&g.deadlock);
    vec_init(&g.red_links, sizeof(uint64_t));
    g.oom = !out_graph_deadlocks(&g, diag);
    sbuf label, tmp;
    sbuf_init(&label);
    sbuf_init(&tmp);
    if (dot) {
        out_puts(w, "digraph snarl {\n    rankdir=LR;\n    node [fontname=\"monospace\"];\n");
    } else {
        out_puts(w, "flowchart LR\n    classDef done stroke-dasharray: 5 5\n");
    }
    out_graph_nodes(w, m, dot, &label, &tmp);
    out_graph_thread_nodes(w, m, &ix, dot, &label, &tmp);
    for (size_t i = 0; i < m->tasks.len; i++) {
        out_task_edges(&g, &ix, VEC_AT(&m->tasks, aio_task, i));
    }
    for (size_t i = 0; i < m->resources.len; i++) {
        out_member_edges(&g, &ix, VEC_AT(&m->resources, aio_resource, i));
        out_hold_edges(&g, &ix, VEC_AT(&m->resources, aio_resource, i));
    }
    out_thread_edges(&g, m, &ix);
    out_mark_findings(&g, diag);
    if (dot) {
        out_puts(w, "}\n");
    }
    if (label.oom || tmp.oom || g.oom) {
        w->failed = true;
    }
    u64map_free(&g.deadlock);
    vec_free(&g.red_links);
    sbuf_free(&label);
    sbuf_free(&tmp);
    out_index_free(&ix);
}

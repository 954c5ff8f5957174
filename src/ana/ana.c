/* The diagnoses. The wait-for graph has a node per task and per resource;
 * a task points at what it waits on, a combinator at its member tasks, a
 * lock at its holders, and an event, queue, barrier or future that nothing
 * outside the tasks' frames references at the tasks that could set it.
 * Every strongly connected component with a cycle is one finding; loop
 * health and weak reachability add the rest. */
#include "ana_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest summary sentence. */
#define ANA_SUMMARY_MAX 1024

static const char *const ana_kind_names[ANA_KIND_COUNT] = {
    [ANA_AWAIT_CYCLE] = "await-cycle",
    [ANA_LOCK_CYCLE] = "lock-cycle",
    [ANA_LOCK_REACQUIRE] = "lock-reacquire",
    [ANA_WAKE_CYCLE] = "wake-cycle",
    [ANA_ALL_ASLEEP] = "all-asleep",
    [ANA_LOOP_BLOCKED] = "loop-blocked",
    [ANA_LOOP_SELF_WAIT] = "loop-self-wait",
    [ANA_NESTED_LOOP] = "nested-loop",
    [ANA_WEAK_PENDING] = "weak-pending-task",
    [ANA_STUCK] = "stuck",
    [ANA_THREAD_LOCK_CYCLE] = "thread-lock-cycle",
};

const char *ana_kind_name(ana_kind k) {
    return (unsigned)k < ANA_KIND_COUNT ? ana_kind_names[k] : "unknown";
}

bool ana_kind_parse(const char *name, ana_kind *out) {
    for (int k = 0; k < ANA_KIND_COUNT; k++) {
        if (strcmp(name, ana_kind_names[k]) == 0) {
            *out = (ana_kind)k;
            return true;
        }
    }
    return false;
}

bool ana_kind_is_deadlock(ana_kind k) {
    return k == ANA_AWAIT_CYCLE || k == ANA_LOCK_CYCLE || k == ANA_LOCK_REACQUIRE ||
           k == ANA_WAKE_CYCLE || k == ANA_THREAD_LOCK_CYCLE;
}

const aio_task *ana_task(const ana_graph *g, size_t i) {
    return VEC_AT(&g->m->tasks, aio_task, i);
}

const aio_resource *ana_res(const ana_graph *g, size_t node) {
    return VEC_AT(&g->m->resources, aio_resource, node - g->ntasks);
}

bool ana_node_of_task(const ana_graph *g, uint64_t id, size_t *node) {
    uint64_t i;
    if (!u64map_get(g->task_index, id, &i)) {
        return false;
    }
    *node = (size_t)i;
    return true;
}

static err_t ana_add_edge(ana_graph *g, size_t from, size_t to, ana_edge_kind kind) {
    ana_pending *p = vec_push(&g->pending);
    if (!p) {
        return ERR_NOMEM;
    }
    p->from = (uint32_t)from;
    p->edge.to = (uint32_t)to;
    p->edge.kind = (uint8_t)kind;
    return ERR_OK;
}

/* The pending edges into place, node by node, each node's in the order
 * they came (a counting sort is stable). The pending vector's length is
 * 32 bits, so the offsets are too. */
static err_t ana_place_edges(ana_graph *g) {
    size_t n = g->pending.len;
    g->first = util_calloc(g->nnodes + 2, sizeof *g->first);
    g->edges = util_alloc((n ? n : 1) * sizeof *g->edges);
    if (!g->first || !g->edges) {
        return ERR_NOMEM;
    }
    const ana_pending *p = g->pending.data;
    for (size_t i = 0; i < n; i++) {
        g->first[p[i].from + 2]++;
    }
    for (size_t v = 2; v < g->nnodes + 2; v++) {
        g->first[v] += g->first[v - 1];
    }
    /* first[v + 1] is now where node v's edges start; placing them moves
     * it to where they end, which is first[v + 1] for the final layout. */
    for (size_t i = 0; i < n; i++) {
        g->edges[g->first[p[i].from + 1]++] = p[i].edge;
    }
    vec_free(&g->pending);
    return ERR_OK;
}

static bool ana_blocked(const aio_task *t) {
    return t->state == AIO_STATE_PENDING && !t->running_thread && t->waits_kind != AIO_KIND_NONE;
}

static err_t ana_edges_to(ana_graph *g, size_t from, const vec *ids, ana_edge_kind kind) {
    for (size_t k = 0; k < ids->len; k++) {
        size_t to;
        if (ana_node_of_task(g, *VEC_AT(ids, uint64_t, k), &to)) {
            err_t e = ana_add_edge(g, from, to, kind);
            if (e != ERR_OK) {
                return e;
            }
        }
    }
    return ERR_OK;
}

static bool ana_is_thread(const ana_graph *g, size_t node) {
    return node >= g->ntasks + g->nres;
}

static const aio_thread *ana_thread(const ana_graph *g, size_t node) {
    return VEC_AT(&g->m->threads, aio_thread, node - g->ntasks - g->nres);
}

static err_t ana_edges_to_threads(ana_graph *g, size_t from, const vec *ids, ana_edge_kind kind) {
    for (size_t k = 0; k < ids->len; k++) {
        uint64_t i;
        if (u64map_get(&g->thread_index, *VEC_AT(ids, uint64_t, k), &i)) {
            err_t e = ana_add_edge(g, from, g->ntasks + g->nres + (size_t)i, kind);
            if (e != ERR_OK) {
                return e;
            }
        }
    }
    return ERR_OK;
}

/* Threads in the graph: a thread blocked for good (no timeout) points at
 * what it waits on; a threading lock at the threads holding it; a
 * concurrent future at the worker running its work item and at the task
 * run_coroutine_threadsafe runs for it; an asyncio future of
 * run_in_executor or wrap_future at the concurrent future it mirrors. */
static err_t ana_thread_edges(ana_graph *g) {
    const aio_model *m = g->m;
    err_t e = ERR_OK;
    for (size_t i = 0; i < m->threads.len && e == ERR_OK; i++) {
        if (!u64map_put(&g->thread_index, (uint64_t)VEC_AT(&m->threads, aio_thread, i)->native_id,
                        i)) {
            return ERR_NOMEM;
        }
    }
    for (size_t i = 0; i < m->threads.len && e == ERR_OK; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        uint64_t r;
        if (th->waits_kind != AIO_KIND_NONE && !th->waits_timeout &&
            u64map_get(&g->res_index, th->waits_on, &r)) {
            e = ana_add_edge(g, g->ntasks + g->nres + i, g->ntasks + (size_t)r, ANA_EDGE_AWAIT);
        }
    }
    for (size_t j = 0; j < m->resources.len && e == ERR_OK; j++) {
        const aio_resource *r = VEC_AT(&m->resources, aio_resource, j);
        size_t node = g->ntasks + j;
        uint64_t to;
        if (r->kind == AIO_KIND_THREAD_LOCK) {
            e = ana_edges_to_threads(g, node, &r->thread_holders, ANA_EDGE_LOCK);
        } else if (r->kind == AIO_KIND_CFUTURE) {
            e = ana_edges_to_threads(g, node, &r->thread_holders, ANA_EDGE_AWAIT);
            if (e == ERR_OK) {
                e = ana_edges_to(g, node, &r->members, ANA_EDGE_AWAIT);
            }
        } else if (r->kind == AIO_KIND_EXECUTOR && r->chained &&
                   u64map_get(&g->res_index, r->chained, &to)) {
            e = ana_add_edge(g, node, g->ntasks + (size_t)to, ANA_EDGE_AWAIT);
        }
    }
    return e;
}

static err_t ana_build_graph(ana_graph *g, const aio_model *m) {
    memset(g, 0, sizeof *g);
    g->m = m;
    g->ntasks = m->tasks.len;
    g->nres = m->resources.len;
    g->nnodes = m->tasks.len + m->resources.len + m->threads.len;
    vec_init(&g->pending, sizeof(ana_pending));
    g->task_index = &m->task_index;
    if (m->task_index.count != m->tasks.len) {
        g->task_index = &g->own_task_index;
        for (size_t i = 0; i < m->tasks.len; i++) {
            if (!u64map_put(&g->own_task_index, ana_task(g, i)->id, i)) {
                return ERR_NOMEM;
            }
        }
    }
    for (size_t i = 0; i < m->resources.len; i++) {
        if (!u64map_put(&g->res_index, VEC_AT(&m->resources, aio_resource, i)->id, i)) {
            return ERR_NOMEM;
        }
    }
    err_t e = ERR_OK;
    for (size_t i = 0; i < m->tasks.len && e == ERR_OK; i++) {
        const aio_task *t = ana_task(g, i);
        if (!ana_blocked(t)) {
            continue;
        }
        size_t to;
        uint64_t r;
        if (t->waits_kind == AIO_KIND_TASK) {
            if (ana_node_of_task(g, t->waits_on, &to)) {
                e = ana_add_edge(g, i, to, ANA_EDGE_AWAIT);
            }
        } else if (u64map_get(&g->res_index, t->waits_on, &r)) {
            e = ana_add_edge(g, i, g->ntasks + (size_t)r, ANA_EDGE_AWAIT);
        }
    }
    for (size_t j = 0; j < m->resources.len && e == ERR_OK; j++) {
        const aio_resource *r = VEC_AT(&m->resources, aio_resource, j);
        size_t node = g->ntasks + j;
        switch (r->kind) {
        case AIO_KIND_GATHER:
        case AIO_KIND_TASKGROUP:
        case AIO_KIND_SHIELD:
        case AIO_KIND_TIMEOUT:
        case AIO_KIND_WAIT:
            /* A timeout's timer fires by itself: no edge through it. */
            if (r->kind != AIO_KIND_TIMEOUT && !(r->kind == AIO_KIND_WAIT && r->wait_timed)) {
                e = ana_edges_to(g, node, &r->members, ANA_EDGE_AWAIT);
            }
            break;
        case AIO_KIND_LOCK:
        case AIO_KIND_SEMAPHORE:
            e = ana_edges_to(g, node, &r->holders, ANA_EDGE_LOCK);
            break;
        case AIO_KIND_EVENT:
        case AIO_KIND_CONDITION:
        case AIO_KIND_QUEUE:
        case AIO_KIND_BARRIER:
        case AIO_KIND_FUTURE:
            if (!r->external_refs) {
                e = ana_edges_to(g, node, &r->resolvers, ANA_EDGE_WAKE);
            }
            break;
        default:
            break;
        }
    }
    e = e == ERR_OK ? ana_thread_edges(g) : e;
    return e == ERR_OK ? ana_place_edges(g) : e;
}

static void ana_free_graph(ana_graph *g) {
    vec_free(&g->pending);
    util_free(g->first);
    util_free(g->edges);
    u64map_free(&g->own_task_index);
    u64map_free(&g->res_index);
    u64map_free(&g->thread_index);
}

/* Tarjan's algorithm with an explicit stack: a task graph can be a million
 * nodes deep and the engine never recurses over target data. */
typedef struct ana_frame {
    uint32_t node;
    uint32_t next_edge;
} ana_frame;

typedef err_t (*ana_scc_fn)(void *ctx, const uint32_t *nodes, size_t n);

static err_t ana_scc(const ana_graph *g, ana_scc_fn fn, void *ctx) {
    size_t n = g->nnodes;
    uint32_t *index = util_alloc(n * sizeof *index + 1), *low = util_alloc(n * sizeof *low + 1);
    bool *on = util_calloc(n + 1, sizeof *on);
    vec stack, call;
    vec_init(&stack, sizeof(uint32_t));
    vec_init(&call, sizeof(ana_frame));
    err_t e = index && low && on ? ERR_OK : ERR_NOMEM;
    const uint32_t unvisited = UINT32_MAX;
    for (size_t i = 0; e == ERR_OK && i < n; i++) {
        index[i] = unvisited;
    }
    uint32_t counter = 0;
    for (size_t root = 0; e == ERR_OK && root < n; root++) {
        if (index[root] != unvisited) {
            continue;
        }
        ana_frame *f0 = vec_push(&call);
        if (!f0) {
            e = ERR_NOMEM;
            break;
        }
        f0->node = (uint32_t)root;
        f0->next_edge = 0;
        index[root] = low[root] = counter++;
        uint32_t *s0 = vec_push(&stack);
        if (!s0) {
            e = ERR_NOMEM;
            break;
        }
        *s0 = (uint32_t)root;
        on[root] = true;
        while (call.len && e == ERR_OK) {
            ana_frame *f = VEC_AT(&call, ana_frame, call.len - 1);
            uint32_t v = f->node;
            size_t nedges;
            const ana_edge *edges = ana_out(g, v, &nedges);
            if (f->next_edge < nedges) {
                uint32_t w = edges[f->next_edge].to;
                f->next_edge++;
                if (index[w] == unvisited) {
                    index[w] = low[w] = counter++;
                    uint32_t *s = vec_push(&stack);
                    ana_frame *nf = s ? vec_push(&call) : NULL;
                    if (!nf) {
                        e = ERR_NOMEM;
                        break;
                    }
                    *s = w;
                    on[w] = true;
                    nf->node = w;
                    nf->next_edge = 0;
                } else if (on[w] && index[w] < low[v]) {
                    low[v] = index[w];
                }
                continue;
            }
            if (low[v] == index[v]) {
                size_t start = stack.len;
                while (start > 0 && *VEC_AT(&stack, uint32_t, start - 1) != v) {
                    start--;
                }
                start--;
                for (size_t k = start; k < stack.len; k++) {
                    on[*VEC_AT(&stack, uint32_t, k)] = false;
                }
                e = fn(ctx, VEC_AT(&stack, uint32_t, start), stack.len - start);
                stack.len = start;
            }
            call.len--;
            if (call.len) {
                ana_frame *parent = VEC_AT(&call, ana_frame, call.len - 1);
                if (low[v] < low[parent->node]) {
                    low[parent->node] = low[v];
                }
            }
        }
    }
    util_free(index);
    util_free(low);
    util_free(on);
    vec_free(&stack);
    vec_free(&call);
    return e;
}

void ana_name(sbuf *b, const aio_task *t) {
    if (t->name && t->name[0]) {
        sbuf_printf(b, "'%s'", t->name);
    } else {
        sbuf_printf(b, "0x%llx", (unsigned long long)t->id);
    }
    if (t->request) { /* the request it serves says more than "Task-4" */
        sbuf_printf(b, " [%s %s%s%s]", t->request->method[0] ? t->request->method : "?",
                    t->request->path[0] ? t->request->path : "?",
                    t->request->client[0] ? " from " : "", t->request->client);
    }
}

void ana_res_name(sbuf *b, const aio_resource *r) {
    sbuf_printf(b, "%s 0x%llx", r->type[0] ? r->type : aio_kind_name(r->kind),
                (unsigned long long)r->id);
}

ana_diagnosis *ana_new(ana_ctx *c, ana_kind kind, uint64_t loop) {
    ana_diagnosis *d = vec_push(&c->out->diagnoses);
    if (d) {
        d->kind = kind;
        d->loop = loop;
        vec_init(&d->tasks, sizeof(uint64_t));
        vec_init(&d->resources, sizeof(uint64_t));
        vec_init(&d->details, sizeof(char *));
        d->summary = NULL;
        vec_init(&d->threads, sizeof(int64_t));
    }
    return d;
}

err_t ana_finish(ana_diagnosis *d, sbuf *b) {
    if (b->oom) {
        sbuf_free(b);
        return ERR_NOMEM;
    }
    d->summary = util_strdup(sbuf_str(b));
    sbuf_free(b);
    return d->summary ? ERR_OK : ERR_NOMEM;
}

/* "'A', 'B' and 'C'" with at most ANA_NAMES_SHOWN names. */
void ana_task_list(sbuf *b, const ana_graph *g, const vec *ids) {
    for (size_t i = 0; i < ids->len; i++) {
        if (i == ANA_NAMES_SHOWN) {
            sbuf_printf(b, " and %zu more", ids->len - i);
            return;
        }
        sbuf_adds(b, i == 0 ? "" : i + 1 == ids->len ? " and " : ", ");
        size_t node;
        if (ana_node_of_task(g, *VEC_AT(ids, uint64_t, i), &node)) {
            ana_name(b, ana_task(g, node));
        }
    }
}

/* Whether a combinator's members that have not ended are all in the
 * component (each in it is a blocked task, so has not ended). */
static bool ana_members_inside(ana_ctx *c, const aio_resource *r) {
    size_t inside = 0, node;
    for (size_t k = 0; k < r->members.len; k++) {
        inside +=
            ana_node_of_task(&c->g, *VEC_AT(&r->members, uint64_t, k), &node) && c->in_scc[node];
    }
    return inside + r->members_ended >= r->members.len;
}

/* A cycle: every wake or lock resource in it must have all its resolvers or
 * holders inside too, or someone outside could still free it. So must every
 * combinator that one member's end can wake: a gather (an error ends it;
 * snarl does not read return_exceptions), a TaskGroup (an error cancels
 * its tasks and its parent) and an asyncio.wait but for ALL_COMPLETED; a
 * shield has one member. */
static bool ana_closed(ana_ctx *c, const uint32_t *nodes, size_t n) {
    const ana_graph *g = &c->g;
    for (size_t i = 0; i < n; i++) {
        if (nodes[i] < g->ntasks || ana_is_thread(g, nodes[i])) {
            continue;
        }
        const aio_resource *r = ana_res(g, nodes[i]);
        if (r->kind == AIO_KIND_SHIELD ||
            (r->kind == AIO_KIND_WAIT && r->wait_when == AIO_WAIT_ALL)) {
            continue;
        }
        if (r->kind == AIO_KIND_GATHER || r->kind == AIO_KIND_TASKGROUP ||
            r->kind == AIO_KIND_WAIT) {
            if (!ana_members_inside(c, r)) {
                return false;
            }
            continue;
        }
        const vec *need =
            r->kind == AIO_KIND_LOCK || r->kind == AIO_KIND_SEMAPHORE ? &r->holders : &r->resolvers;
        for (size_t k = 0; k < need->len; k++) {
            size_t node;
            if (!ana_node_of_task(g, *VEC_AT(need, uint64_t, k), &node) || !c->in_scc[node]) {
                return false;
            }
        }
    }
    return true;
}

static err_t ana_report_cycle(ana_ctx *c, const uint32_t *ring, size_t n, bool wake, bool lock,
                              size_t tasks);
static bool ana_threads_closed(ana_ctx *c, const uint32_t *nodes, size_t n, bool *threads);
static err_t ana_report_thread_cycle(ana_ctx *c, const uint32_t *ring, size_t n, bool wake,
                                     bool lock, size_t tasks);

/* Lists an SCC's nodes (marked in in_scc) the way its edges run: from its
 * last task on the stack, each next node is the first successor in the SCC
 * not yet listed. A plain ring comes out whole, in order, so that "A waits
 * for L1 (held by B), which waits for L2 (held by C)" reads true; nodes an
 * SCC of several rings leaves off the walk follow in stack order. Clears
 * in_scc of each node it lists. */
static void ana_ring_order(ana_ctx *c, const uint32_t *nodes, size_t n, uint32_t *out) {
    const ana_graph *g = &c->g;
    size_t k = 0;
    uint32_t cur = nodes[n - 1];
    for (size_t i = n; i-- > 0;) {
        if (nodes[i] < g->ntasks) {
            cur = nodes[i];
            break;
        }
    }
    for (bool more = true; more;) {
        out[k++] = cur;
        c->in_scc[cur] = false;
        more = false;
        size_t nedges;
        const ana_edge *edges = ana_out(g, cur, &nedges);
        for (size_t e = 0; e < nedges && !more; e++) {
            uint32_t to = edges[e].to;
            if (c->in_scc[to]) {
                cur = to;
                more = true;
            }
        }
    }
    for (size_t i = n; i-- > 0;) {
        if (c->in_scc[nodes[i]]) {
            out[k++] = nodes[i];
            c->in_scc[nodes[i]] = false;
        }
    }
}

static err_t ana_on_scc(void *ctx, const uint32_t *nodes, size_t n) {
    ana_ctx *c = ctx;
    const ana_graph *g = &c->g;
    bool cyclic = n > 1;
    size_t nself;
    const ana_edge *self = ana_out(g, nodes[0], &nself);
    for (size_t k = 0; !cyclic && k < nself; k++) {
        cyclic = self[k].to == nodes[0];
    }
    if (!cyclic) {
        return ERR_OK;
    }
    for (size_t i = 0; i < n; i++) {
        c->in_scc[nodes[i]] = true;
    }
    bool threads = false;
    bool wake = false, lock = false,
         closed = ana_closed(c, nodes, n) && ana_threads_closed(c, nodes, n, &threads);
    size_t tasks = 0;
    for (size_t i = 0; i < n; i++) {
        tasks += nodes[i] < g->ntasks;
        size_t nedges;
        const ana_edge *edges = ana_out(g, nodes[i], &nedges);
        for (size_t k = 0; k < nedges; k++) {
            const ana_edge *e = &edges[k];
            if (c->in_scc[e->to]) {
                wake |= e->kind == ANA_EDGE_WAKE;
                lock |= e->kind == ANA_EDGE_LOCK;
            }
        }
    }
    uint32_t *ring = closed ? util_alloc(n * sizeof *ring) : NULL;
    if (ring) {
        ana_ring_order(c, nodes, n, ring); /* clears in_scc as it goes */
    }
    for (size_t i = 0; i < n; i++) {
        c->in_scc[nodes[i]] = false;
    }
    if (!closed) {
        return ERR_OK;
    }
    if (!ring) {
        return ERR_NOMEM;
    }
    err_t e = threads ? ana_report_thread_cycle(c, ring, n, wake, lock, tasks)
                      : ana_report_cycle(c, ring, n, wake, lock, tasks);
    util_free(ring);
    return e;
}

/* Reports one closed cycle whose nodes ring lists in the order its edges
 * run (a task, what it waits for, who holds or would wake that, ...). */
static err_t ana_report_cycle(ana_ctx *c, const uint32_t *ring, size_t n, bool wake, bool lock,
                              size_t tasks) {
    const ana_graph *g = &c->g;
    /* One task and its own lock: a re-acquire, reported on its own. */
    if (lock && !wake && tasks == 1) {
        return ERR_OK;
    }
    ana_kind kind = wake ? ANA_WAKE_CYCLE : lock ? ANA_LOCK_CYCLE : ANA_AWAIT_CYCLE;
    ana_diagnosis *d = ana_new(c, kind, 0);
    if (!d) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        bool ok = ring[i] < g->ntasks ? u64vec_push(&d->tasks, ana_task(g, ring[i])->id)
                                      : u64vec_push(&d->resources, ana_res(g, ring[i])->id);
        if (!ok) {
            return ERR_NOMEM;
        }
    }
    sbuf b;
    sbuf_init(&b);
    if (kind == ANA_AWAIT_CYCLE) {
        sbuf_adds(&b, "Tasks ");
        ana_task_list(&b, g, &d->tasks);
        sbuf_adds(&b, " await each other in a ring: none of them can ever finish.");
    } else if (kind == ANA_LOCK_CYCLE) {
        /* Task 'A' waits for Lock 0x.. (held by task 'B' since f:12), ... */
        for (size_t i = 0; i < d->tasks.len; i++) {
            size_t node;
            if (!ana_node_of_task(g, *VEC_AT(&d->tasks, uint64_t, i), &node)) {
                continue;
            }
            const aio_task *t = ana_task(g, node);
            uint64_t ri;
            if (!u64map_get(&g->res_index, t->waits_on, &ri)) {
                continue;
            }
            const aio_resource *r = VEC_AT(&g->m->resources, aio_resource, ri);
            sbuf_adds(&b, i ? ", which waits for " : "Task ");
            if (!i) {
                ana_name(&b, t);
                sbuf_adds(&b, " waits for ");
            }
            ana_res_name(&b, r);
            for (size_t h = 0; h < r->holders.len; h++) {
                size_t hn;
                if (ana_node_of_task(g, *VEC_AT(&r->holders, uint64_t, h), &hn)) {
                    const aio_site *site = VEC_AT(&r->holder_sites, aio_site, h);
                    sbuf_adds(&b, h ? " and " : " (held by task ");
                    ana_name(&b, ana_task(g, hn));
                    if (site->file) {
                        /* Where the holder is suspended inside the block,
                         * not where it entered it (no record of that). */
                        sbuf_printf(&b, ", suspended at %s:%d", site->file, site->line);
                    }
                }
            }
            sbuf_adds(&b, r->holders.len ? ")" : "");
        }
        sbuf_adds(&b, ": a lock-order deadlock.");
    } else {
        sbuf_adds(&b, "Tasks ");
        ana_task_list(&b, g, &d->tasks);
        sbuf_adds(&b, " wait on ");
        for (size_t i = 0; i < d->resources.len && i < ANA_NAMES_SHOWN; i++) {
            uint64_t ri = 0;
            u64map_get(&g->res_index, *VEC_AT(&d->resources, uint64_t, i), &ri);
            sbuf_adds(&b, i ? ", " : "");
            ana_res_name(&b, VEC_AT(&g->m->resources, aio_resource, ri));
        }
        sbuf_adds(&b, " that only tasks of this same blocked group could wake.");
    }
    return ana_finish(d, &b);
}

/* A cycle through threads is closed when each threading lock in it has
 * all its holders inside, and each concurrent future all the threads and
 * tasks that would complete it; *threads tells whether it has a thread. */
static bool ana_threads_closed(ana_ctx *c, const uint32_t *nodes, size_t n, bool *threads) {
    const ana_graph *g = &c->g;
    *threads = false;
    for (size_t i = 0; i < n; i++) {
        *threads |= ana_is_thread(g, nodes[i]);
    }
    for (size_t i = 0; *threads && i < n; i++) {
        if (nodes[i] < g->ntasks || ana_is_thread(g, nodes[i])) {
            continue;
        }
        const aio_resource *r = ana_res(g, nodes[i]);
        if (r->kind != AIO_KIND_THREAD_LOCK && r->kind != AIO_KIND_CFUTURE &&
            r->kind != AIO_KIND_EXECUTOR) {
            continue;
        }
        size_t nedges;
        const ana_edge *edges = ana_out(g, nodes[i], &nedges);
        for (size_t k = 0; k < nedges; k++) {
            if (!c->in_scc[edges[k].to]) {
                return false;
            }
        }
        /* A holder or worker that is no thread the model knows is outside. */
        size_t known = 0;
        for (size_t k = 0; k < r->thread_holders.len; k++) {
            uint64_t idx;
            known += u64map_get(&g->thread_index, *VEC_AT(&r->thread_holders, uint64_t, k), &idx);
        }
        if (known < r->thread_holders.len) {
            return false;
        }
    }
    return true;
}

static void ana_thread_name(sbuf *b, const aio_thread *th) {
    sbuf_printf(b, "thread %lld", (long long)th->native_id);
    if (th->name[0]) {
        sbuf_printf(b, " '%s'", th->name);
    }
}

/* A task or a thread, as the object of a sentence. */
static void ana_actor(sbuf *b, const ana_graph *g, size_t node, bool first, bool worker) {
    if (ana_is_thread(g, node)) {
        const aio_thread *th = ana_thread(g, node);
        if (first) {
            sbuf_adds(b, "Thread");
            sbuf_printf(b, " %lld", (long long)th->native_id);
            if (th->name[0]) {
                sbuf_printf(b, " '%s'", th->name);
            }
        } else {
            ana_thread_name(b, th);
        }
        if (worker && th->work_fn[0]) {
            sbuf_printf(b, " in %s()", th->work_fn);
        }
        return;
    }
    sbuf_adds(b, first ? "Task " : "task ");
    ana_name(b, ana_task(g, node));
}

/* Reports a closed ring through threads: a thread-lock-cycle when only
 * threads and threading locks are in it, else the kind its edges make
 * (lock-cycle, wake-cycle, await-cycle), naming its threads too. */
static err_t ana_report_thread_cycle(ana_ctx *c, const uint32_t *ring, size_t n, bool wake,
                                     bool lock, size_t tasks) {
    const ana_graph *g = &c->g;
    /* Threads alone, around threading locks (and the futures a blocked
     * loop thread would have to start): jstack's deadlock. */
    bool thread_locks_only = tasks == 0 && lock;
    ana_kind kind = thread_locks_only ? ANA_THREAD_LOCK_CYCLE
                    : wake            ? ANA_WAKE_CYCLE
                    : lock            ? ANA_LOCK_CYCLE
                                      : ANA_AWAIT_CYCLE;
    ana_diagnosis *d = ana_new(c, kind, 0);
    if (!d) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        bool ok = ring[i] < g->ntasks ? u64vec_push(&d->tasks, ana_task(g, ring[i])->id)
                  : ana_is_thread(g, ring[i])
                      ? u64vec_push(&d->threads, (uint64_t)ana_thread(g, ring[i])->native_id)
                      : u64vec_push(&d->resources, ana_res(g, ring[i])->id);
        if (!ok) {
            return ERR_NOMEM;
        }
    }
    /* "Task 'A' waits for Future 0x.. mirroring concurrent future 0x..,
     * run by thread 12 in job(), which waits for concurrent future 0x..
     * of task 'B', which waits for Lock 0x.. held by task 'A'". */
    /* The sentence starts at a task, or at a thread when none is in it. */
    size_t s0 = 0;
    for (size_t i = n; i-- > 0;) {
        if (ring[i] < g->ntasks || (ana_is_thread(g, ring[i]) && !(ring[s0] < g->ntasks))) {
            s0 = i;
        }
    }
    sbuf b;
    sbuf_init(&b);
    ana_actor(&b, g, ring[s0], true, false);
    for (size_t i = 0; i < n; i++) {
        uint32_t cur = ring[(s0 + i) % n], next = ring[(s0 + i + 1) % n];
        bool next_actor = next < g->ntasks || ana_is_thread(g, next);
        if (cur < g->ntasks || ana_is_thread(g, cur)) {
            sbuf_adds(&b, next_actor ? (i ? ", which awaits " : " awaits ")
                                     : (i ? ", which waits for " : " waits for "));
            if (next_actor) {
                ana_actor(&b, g, next, false, false);
            }
            continue;
        }
        const aio_resource *r = ana_res(g, cur);
        if (r->kind == AIO_KIND_CFUTURE) {
            sbuf_printf(&b, "concurrent future 0x%llx", (unsigned long long)r->id);
        } else {
            ana_res_name(&b, r);
        }
        if (!next_actor) {
            sbuf_adds(&b, " mirroring ");
            continue;
        }
        bool held = r->kind == AIO_KIND_LOCK || r->kind == AIO_KIND_SEMAPHORE ||
                    r->kind == AIO_KIND_THREAD_LOCK;
        bool worker = r->kind == AIO_KIND_CFUTURE && ana_is_thread(g, next);
        sbuf_adds(&b, held                          ? " held by "
                      : worker                      ? ", run by "
                      : r->kind == AIO_KIND_CFUTURE ? " of "
                                                    : " for ");
        ana_actor(&b, g, next, false, worker);
    }
    sbuf_adds(&b,
              kind == ANA_THREAD_LOCK_CYCLE
                  ? ": a lock-order deadlock between threads."
                  : ": tasks and threads wait for each other in a ring, none of them can go on.");
    return ana_finish(d, &b);
}

static err_t ana_reacquire(ana_ctx *c) {
    const ana_graph *g = &c->g;
    for (size_t i = 0; i < g->ntasks; i++) {
        const aio_task *t = ana_task(g, i);
        uint64_t ri;
        if (!ana_blocked(t) ||
            (t->waits_kind != AIO_KIND_LOCK && t->waits_kind != AIO_KIND_SEMAPHORE) ||
            !u64map_get(&g->res_index, t->waits_on, &ri)) {
            continue;
        }
        const aio_resource *r = VEC_AT(&g->m->resources, aio_resource, ri);
        /* Only when it alone holds it: other holders may still release. */
        bool self = r->holders.len > 0;
        for (size_t h = 0; h < r->holders.len; h++) {
            self &= *VEC_AT(&r->holders, uint64_t, h) == t->id;
        }
        if (!self) {
            continue;
        }
        ana_diagnosis *d = ana_new(c, ANA_LOCK_REACQUIRE, 0);
        if (!d || !u64vec_push(&d->tasks, t->id) || !u64vec_push(&d->resources, r->id)) {
            return ERR_NOMEM;
        }
        const aio_site *site = VEC_AT(&r->holder_sites, aio_site, 0);
        sbuf b;
        sbuf_init(&b);
        sbuf_adds(&b, "Task ");
        ana_name(&b, t);
        sbuf_adds(&b, " waits for ");
        ana_res_name(&b, r);
        if (strncmp(r->type, "httpcore.", 9) == 0) {
            /* A connection pool is held by the response streams still open. */
            sbuf_printf(&b, " (%s), whose connections its own open response holds", r->detail);
            if (site->file) {
                sbuf_printf(&b, " (kept at %s:%d)", site->file, site->line);
            }
        } else {
            sbuf_adds(&b, ", which it already holds");
            if (site->file) {
                sbuf_printf(&b, " (inside its `async with` at %s:%d)", site->file, site->line);
            }
        }
        sbuf_adds(&b, ": it waits for itself.");
        err_t e = ana_finish(d, &b);
        if (e != ERR_OK) {
            return e;
        }
    }
    return ERR_OK;
}

static err_t ana_loops(ana_ctx *c) {
    const aio_model *m = c->g.m;
    for (size_t i = 0; i < m->loops.len; i++) {
        const aio_loop *l = VEC_AT(&m->loops, aio_loop, i);
        size_t running;
        const aio_task *rt = l->running_task && ana_node_of_task(&c->g, l->running_task, &running)
                                 ? ana_task(&c->g, running)
                                 : NULL;
        const aio_frame *f = l->doing_frame;
        sbuf b;
        sbuf_init(&b);
        ana_diagnosis *d = NULL;
        if (l->runs >= 2) {
            if (!(d = ana_new(c, ANA_NESTED_LOOP, l->id))) {
                return ERR_NOMEM;
            }
            /* Every task running on that thread: the outer loop's task that
             * re-entered, and the inner loop's, if one runs. */
            for (size_t k = 0; k < m->tasks.len; k++) {
                const aio_task *t = VEC_AT(&m->tasks, aio_task, k);
                if (t->running_thread && t->running_thread == l->thread &&
                    !u64vec_push(&d->tasks, t->id)) {
                    return ERR_NOMEM;
                }
            }
            sbuf_printf(&b,
                        "Thread %lld runs an event loop inside its running loop 0x%llx "
                        "(run_forever entered %d times): the outer loop is stuck until the "
                        "inner one returns.",
                        (long long)l->thread, (unsigned long long)l->id, l->runs);
            err_t e = ana_finish(d, &b);
            if (e != ERR_OK) {
                return e;
            }
            sbuf_init(&b);
        }
        if (l->doing == AIO_DOING_THREAD_WAIT && l->self_wait_future) {
            if (!(d = ana_new(c, ANA_LOOP_SELF_WAIT, l->id)) ||
                (rt && !u64vec_push(&d->tasks, rt->id)) ||
                !u64vec_push(&d->resources, l->self_wait_future)) {
                return ERR_NOMEM;
            }
            sbuf_printf(&b,
                        "The loop thread %lld blocks on concurrent future 0x%llx that only its "
                        "own loop could complete (run_coroutine_threadsafe(...).result() called "
                        "on the loop thread).",
                        (long long)l->thread, (unsigned long long)l->self_wait_future);
        } else if (l->doing == AIO_DOING_TASK || l->doing == AIO_DOING_CALLBACK ||
                   l->doing == AIO_DOING_THREAD_WAIT) {
            if (!(d = ana_new(c, ANA_LOOP_BLOCKED, l->id)) ||
                (rt && !u64vec_push(&d->tasks, rt->id))) {
                return ERR_NOMEM;
            }
            sbuf_printf(&b, "The loop thread %lld is ", (long long)l->thread);
            sbuf_adds(&b, l->doing == AIO_DOING_THREAD_WAIT ? "blocked on a thread wait"
                                                            : "running synchronous code");
            if (rt) {
                sbuf_adds(&b, " in task ");
                ana_name(&b, rt);
            }
            if (f && aio_frame_function(f)) {
                sbuf_printf(&b, " (%s at %s:%d)", aio_frame_function(f), aio_frame_file(f),
                            f->line);
            }
            sbuf_adds(&b, " instead of waiting in its selector: no other task of this loop "
                          "can run.");
        } else if (l->doing == AIO_DOING_SELECT && l->health_known && !l->ready && !l->timers &&
                   !l->fds && !l->executor_jobs && !m->other_threads) {
            size_t pending = 0;
            for (size_t k = 0; k < m->tasks.len; k++) {
                const aio_task *t = VEC_AT(&m->tasks, aio_task, k);
                pending += t->loop == l->id && t->state == AIO_STATE_PENDING;
            }
            if (!pending) {
                continue;
            }
            if (!(d = ana_new(c, ANA_ALL_ASLEEP, l->id))) {
                return ERR_NOMEM;
            }
            for (size_t k = 0; k < m->tasks.len; k++) {
                const aio_task *t = VEC_AT(&m->tasks, aio_task, k);
                if (t->loop == l->id && t->state == AIO_STATE_PENDING &&
                    !u64vec_push(&d->tasks, t->id)) {
                    return ERR_NOMEM;
                }
            }
            sbuf_printf(&b,
                        "Loop 0x%llx has nothing that could ever wake it (no ready callbacks, no "
                        "timers, no watched descriptors, no executor work, no other thread): its "
                        "%zu pending tasks are stuck for good.",
                        (unsigned long long)l->id, pending);
        } else {
            continue;
        }
        err_t e = ana_finish(d, &b);
        if (e != ERR_OK) {
            return e;
        }
    }
    return ERR_OK;
}

static err_t ana_weak(ana_ctx *c) {
    const ana_graph *g = &c->g;
    for (size_t i = 0; i < g->ntasks; i++) {
        const aio_task *t = ana_task(g, i);
        if (!(ana_task_verdict(c->out, i) & ANA_TASK_WEAK)) {
            continue;
        }
        ana_diagnosis *d = ana_new(c, ANA_WEAK_PENDING, t->loop);
        if (!d || !u64vec_push(&d->tasks, t->id)) {
            return ERR_NOMEM;
        }
        sbuf b;
        sbuf_init(&b);
        sbuf_adds(&b, "Task ");
        ana_name(&b, t);
        sbuf_adds(&b, " is pending but no strong reference keeps it alive: the garbage collector "
                      "will destroy it (\"Task was destroyed but it is pending!\").");
        err_t e = ana_finish(d, &b);
        if (e != ERR_OK) {
            return e;
        }
    }
    return ERR_OK;
}

/* Which findings name each task and resource, for the views' marks. */
static err_t ana_index_marks(ana_result *r) {
    u64map_free(&r->marks);
    for (size_t i = 0; i < r->diagnoses.len; i++) {
        const ana_diagnosis *d = VEC_AT(&r->diagnoses, ana_diagnosis, i);
        const vec *lists[] = {&d->tasks, &d->resources};
        for (size_t l = 0; l < ARRAY_LEN(lists); l++) {
            for (size_t k = 0; k < lists[l]->len; k++) {
                uint64_t id = *VEC_AT(lists[l], uint64_t, k), v = 0;
                u64map_get(&r->marks, id, &v);
                if (id && !u64map_put(&r->marks, id, v | (1u << d->kind))) {
                    return ERR_NOMEM;
                }
            }
        }
    }
    return ERR_OK;
}

unsigned ana_marks(const ana_result *r, uint64_t id) {
    uint64_t v = 0;
    return r && id && u64map_get(&r->marks, id, &v) ? (unsigned)v : 0;
}

unsigned ana_task_verdict(const ana_result *r, size_t i) {
    return r && r->task_flags ? r->task_flags[i] : 0;
}

void ana_result_init(ana_result *r) {
    memset(r, 0, sizeof *r);
    vec_init(&r->diagnoses, sizeof(ana_diagnosis));
}

err_t ana_diagnose(const aio_model *m, ana_result *out) {
    ana_result_init(out);
    ana_ctx c;
    memset(&c, 0, sizeof c);
    c.out = out;
    err_t e = ana_build_graph(&c.g, m);
    if (e == ERR_OK && !(c.in_scc = util_calloc(c.g.nnodes + 1, sizeof *c.in_scc))) {
        e = ERR_NOMEM;
    }
    if (e == ERR_OK) {
        e = ana_reach_verdicts(&c);
    }
    if (e == ERR_OK) {
        e = ana_scc(&c.g, ana_on_scc, &c);
    }
    if (e == ERR_OK) {
        e = ana_reacquire(&c);
    }
    if (e == ERR_OK) {
        e = ana_loops(&c);
    }
    if (e == ERR_OK) {
        e = ana_weak(&c);
    }
    /* Last: it leaves out the stuck tasks the findings above name. */
    if (e == ERR_OK) {
        e = ana_report_stuck(&c);
    }
    if (e == ERR_OK) {
        e = ana_index_marks(out);
    }
    util_free(c.in_scc);
    ana_free_graph(&c.g);
    if (e != ERR_OK) {
        ana_result_free(out);
    }
    return e;
}

static int ana_u64_cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The same ids in any order: sorted copies compared, since a stuck group
 * can hold a hundred thousand tasks. */
static bool ana_same_ids(const vec *a, const vec *b) {
    if (a->len != b->len) {
        return false;
    }
    if (a->len <= 1) {
        return a->len == 0 || *VEC_AT(a, uint64_t, 0) == *VEC_AT(b, uint64_t, 0);
    }
    uint64_t *x = util_alloc(a->len * sizeof *x), *y = util_alloc(b->len * sizeof *y);
    bool same = false;
    if (x && y) {
        memcpy(x, a->data, a->len * sizeof *x);
        memcpy(y, b->data, b->len * sizeof *y);
        qsort(x, a->len, sizeof *x, ana_u64_cmp);
        qsort(y, b->len, sizeof *y, ana_u64_cmp);
        same = memcmp(x, y, a->len * sizeof *x) == 0;
    }
    util_free(x);
    util_free(y);
    return same;
}

void ana_diagnosis_free(ana_diagnosis *d) {
    vec_free(&d->tasks);
    vec_free(&d->resources);
    vec_free(&d->threads);
    for (size_t i = 0; i < d->details.len; i++) {
        util_free(*VEC_AT(&d->details, char *, i));
    }
    vec_free(&d->details);
    util_free(d->summary);
}

static bool ana_same_diagnosis(const ana_diagnosis *a, const ana_diagnosis *b) {
    return a->kind == b->kind && a->loop == b->loop && ana_same_ids(&a->tasks, &b->tasks) &&
           ana_same_ids(&a->resources, &b->resources) && ana_same_ids(&a->threads, &b->threads);
}

size_t ana_keep_confirmed(ana_result *r, const ana_result *again, unsigned mask) {
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i < r->diagnoses.len; i++) {
        ana_diagnosis *d = VEC_AT(&r->diagnoses, ana_diagnosis, i);
        bool seen = !(mask & (1u << d->kind));
        for (size_t j = 0; j < again->diagnoses.len && !seen; j++) {
            seen = ana_same_diagnosis(d, VEC_AT(&again->diagnoses, ana_diagnosis, j));
        }
        if (seen) {
            *VEC_AT(&r->diagnoses, ana_diagnosis, kept++) = *d;
            continue;
        }
        ana_diagnosis_free(d);
        dropped++;
    }
    r->diagnoses.len = kept;
    if (ana_index_marks(r) != ERR_OK) {
        u64map_free(&r->marks); /* no marks is better than stale ones */
    }
    return dropped;
}

void ana_result_free(ana_result *r) {
    for (size_t i = 0; i < r->diagnoses.len; i++) {
        ana_diagnosis_free(VEC_AT(&r->diagnoses, ana_diagnosis, i));
    }
    vec_free(&r->diagnoses);
    util_free(r->task_flags);
    r->task_flags = NULL;
    u64map_free(&r->marks);
}

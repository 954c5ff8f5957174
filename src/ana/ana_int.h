/* Internals shared by the analysis layer's files: the wait-for graph and
 * the context the diagnoses are written into. */
#ifndef SNARL_ANA_INT_H
#define SNARL_ANA_INT_H

#include "ana.h"

/* Tasks named in one summary before "and N more". */
#define ANA_NAMES_SHOWN 4

typedef enum ana_edge_kind { ANA_EDGE_AWAIT, ANA_EDGE_LOCK, ANA_EDGE_WAKE } ana_edge_kind;

typedef struct ana_edge {
    uint32_t to;
    uint8_t kind;
} ana_edge;

typedef struct ana_graph {
    const aio_model *m;
    size_t ntasks, nnodes;
    size_t nres; /* resources are nodes ntasks.., threads follow them */
    /* Task id -> index: the model's own index when it has one (a second
     * copy was 30 MB at a million tasks), else own_task_index. */
    const u64map *task_index;
    u64map own_task_index, res_index;
    u64map thread_index; /* native id -> index in m->threads */
    /* The edges, node by node: node v's are edges[first[v] .. first[v+1]),
     * in the order they were added. Gathered as (from, edge) pairs while
     * the graph is built, then placed by a counting sort: a vector per
     * node was a small allocation per task, 70 MB at a million tasks. */
    vec pending; /* ana_pending, until ana_build_graph places them */
    uint32_t *first;
    ana_edge *edges;
} ana_graph;

typedef struct ana_pending {
    uint32_t from;
    ana_edge edge;
} ana_pending;

/* Node v's edges; *n gets their count. */
static inline const ana_edge *ana_out(const ana_graph *g, size_t v, size_t *n) {
    *n = g->first[v + 1] - g->first[v];
    return g->edges + g->first[v];
}

typedef struct ana_ctx {
    ana_graph g;
    ana_result *out;
    bool *in_scc; /* scratch: membership of the component being examined */
} ana_ctx;

const aio_task *ana_task(const ana_graph *g, size_t i);
const aio_resource *ana_res(const ana_graph *g, size_t node);
bool ana_node_of_task(const ana_graph *g, uint64_t id, size_t *node);
void ana_name(sbuf *b, const aio_task *t);
void ana_res_name(sbuf *b, const aio_resource *r);
/* "'A', 'B' and 'C'" with at most ANA_NAMES_SHOWN names. */
void ana_task_list(sbuf *b, const ana_graph *g, const vec *ids);
/* A new diagnosis in the result; NULL when out of memory. */
ana_diagnosis *ana_new(ana_ctx *c, ana_kind kind, uint64_t loop);
/* Takes b's text as d's summary (and frees b). */
err_t ana_finish(ana_diagnosis *d, sbuf *b);

/* The two passes over the object graph (ana_reach.c): each task's verdicts
 * into c->out, then the `stuck` findings for the stuck tasks no other
 * finding names. */
err_t ana_reach_verdicts(ana_ctx *c);
err_t ana_report_stuck(ana_ctx *c);

#endif

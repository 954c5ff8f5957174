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
    u64map task_index, res_index;
    u64map thread_index; /* native id -> index in m->threads */
    vec *out;            /* per node: vec of ana_edge */
} ana_graph;

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

/* The analysis layer: pure functions over a built model. The wait-for graph
 * of tasks and resources, its strongly connected components, and the
 * diagnoses (deadlocks, cycles, a loop nothing can wake, a blocked loop,
 * tasks only weak references keep alive). Reads no memory. */
#ifndef SNARL_ANA_H
#define SNARL_ANA_H

#include "../aio/aio.h"

typedef enum ana_kind {
    ANA_AWAIT_CYCLE,
    ANA_LOCK_CYCLE,
    ANA_LOCK_REACQUIRE,
    ANA_WAKE_CYCLE,
    ANA_ALL_ASLEEP,
    ANA_LOOP_BLOCKED,
    ANA_LOOP_SELF_WAIT,
    ANA_NESTED_LOOP,
    ANA_WEAK_PENDING,
    ANA_STUCK,
    ANA_THREAD_LOCK_CYCLE, /* threads each holding a threading lock the next one waits for */
    ANA_KIND_COUNT,
} ana_kind;

typedef struct ana_diagnosis {
    ana_kind kind;
    vec tasks;     /* uint64_t task ids, in cycle order for cycles */
    vec resources; /* uint64_t resource ids */
    vec threads;   /* int64_t native ids of the threads in it (a ring through threads) */
    uint64_t loop; /* 0 when not about one loop */
    char *summary; /* one plain sentence */
    vec details;   /* char *: further sentences (stuck: who still references each wait) */
} ana_diagnosis;

/* Per-task verdicts of the reachability passes (ana_reach.c). */
#define ANA_TASK_WEAK 1u        /* the cycle collector would destroy it */
#define ANA_TASK_STUCK 2u       /* nothing still able to run can reach what it waits on */
#define ANA_TASK_CANCELLABLE 4u /* stuck, but live code holds the task and could cancel it */

typedef struct ana_result {
    vec diagnoses; /* ana_diagnosis */
    /* The reachability passes: verdicts parallel to the model's tasks
     * (NULL when the object graph was not read), and why they were not
     * reached when they could not be (counts that do not add up). */
    uint8_t *task_flags;
    bool weak_known, stuck_known;
    const char *reach_doubt;
    uint64_t reach_objects, reach_roots; /* the collector's replay: objects, roots */
    u64map marks; /* task or resource id -> bit per ana_kind of the findings naming it */
} ana_result;

const char *ana_kind_name(ana_kind k);
/* Parses a kind name; false if unknown. */
bool ana_kind_parse(const char *name, ana_kind *out);
/* True for the kinds counted as deadlocks in the report's headline. */
bool ana_kind_is_deadlock(ana_kind k);

err_t ana_diagnose(const aio_model *m, ana_result *out);
/* Keeps in r only those diagnoses of the kinds in mask (bits of ana_kind)
 * that again also has (same kind, loop, tasks and resources, in any order);
 * the other kinds stay. Returns how many it dropped. For a second read of a
 * live process: a real deadlock holds still, a torn read does not repeat
 * itself, and a loop that only ran a callback at the first read has moved
 * on by the second. */
size_t ana_keep_confirmed(ana_result *r, const ana_result *again, unsigned mask);
/* An empty result (what ana_diagnose starts from). */
void ana_result_init(ana_result *r);
void ana_result_free(ana_result *r);
void ana_diagnosis_free(ana_diagnosis *d);
/* The kinds (bit per ana_kind) of the findings that name this task or
 * resource; 0 when none does. */
unsigned ana_marks(const ana_result *r, uint64_t id);
/* The reachability verdicts of task i of the model (ANA_TASK_*). */
unsigned ana_task_verdict(const ana_result *r, size_t i);

#endif

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
    ANA_KIND_COUNT,
} ana_kind;

typedef struct ana_diagnosis {
    ana_kind kind;
    vec tasks;     /* uint64_t task ids, in cycle order for cycles */
    vec resources; /* uint64_t resource ids */
    uint64_t loop; /* 0 when not about one loop */
    char *summary; /* one plain sentence */
} ana_diagnosis;

typedef struct ana_result {
    vec diagnoses; /* ana_diagnosis */
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
void ana_result_free(ana_result *r);

#endif

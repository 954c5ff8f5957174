/* ana_keep_confirmed: a second read of a live target keeps the findings it
 * repeats (members in any order) and drops the others, but only for the
 * kinds it is asked to confirm. */
#include <string.h>

#include "../../src/ana/ana.h"
#include "unit.h"

static void tc_add(ana_result *r, ana_kind kind, uint64_t loop, const uint64_t *tasks, size_t n) {
    ana_diagnosis *d = vec_push(&r->diagnoses);
    if (!CHECK(d != NULL)) {
        return;
    }
    memset(d, 0, sizeof *d);
    d->kind = kind;
    d->loop = loop;
    vec_init(&d->tasks, sizeof(uint64_t));
    vec_init(&d->resources, sizeof(uint64_t));
    for (size_t i = 0; i < n; i++) {
        *(uint64_t *)vec_push(&d->tasks) = tasks[i];
    }
    d->summary = util_strdup("s");
}

static void tc_first(ana_result *r) {
    ana_result_init(r);
    tc_add(r, ANA_AWAIT_CYCLE, 0, (const uint64_t[]){1, 2}, 2);
    tc_add(r, ANA_LOOP_BLOCKED, 5, (const uint64_t[]){7}, 1);
    tc_add(r, ANA_WEAK_PENDING, 0, (const uint64_t[]){3}, 1);
}

TEST(confirm_keeps_what_the_second_read_repeats_in_any_order) {
    ana_result first, again;
    tc_first(&first);
    ana_result_init(&again);
    tc_add(&again, ANA_AWAIT_CYCLE, 0, (const uint64_t[]){2, 1}, 2); /* same ring, rotated */
    tc_add(&again, ANA_LOOP_BLOCKED, 5, (const uint64_t[]){8}, 1);   /* another task runs */
    tc_add(&again, ANA_WEAK_PENDING, 0, (const uint64_t[]){3, 4}, 2); /* not the same set */
    CHECK_EQ(ana_keep_confirmed(&first, &again, (1u << ANA_KIND_COUNT) - 1), 2);
    CHECK_EQ(first.diagnoses.len, 1);
    CHECK_EQ(VEC_AT(&first.diagnoses, ana_diagnosis, 0)->kind, ANA_AWAIT_CYCLE);
    ana_result_free(&first);
    ana_result_free(&again);
}

TEST(confirm_leaves_the_kinds_it_is_not_asked_about) {
    ana_result first, none;
    tc_first(&first);
    ana_result_init(&none);
    /* Frozen reads confirm only the momentary loop-blocked. */
    CHECK_EQ(ana_keep_confirmed(&first, &none, 1u << ANA_LOOP_BLOCKED), 1);
    CHECK_EQ(first.diagnoses.len, 2);
    CHECK_EQ(VEC_AT(&first.diagnoses, ana_diagnosis, 0)->kind, ANA_AWAIT_CYCLE);
    CHECK_EQ(VEC_AT(&first.diagnoses, ana_diagnosis, 1)->kind, ANA_WEAK_PENDING);
    ana_result_free(&first);
    ana_result_free(&none);
}

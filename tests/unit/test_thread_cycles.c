/* The wait-for graph through threads and asyncio.wait, over hand-built
 * models: two threads holding the threading locks each other waits for are
 * a thread-lock-cycle; a task -> executor future -> concurrent future ->
 * worker thread -> concurrent future -> task -> lock ring is a lock-cycle
 * naming its worker; a timeout, an unknown holder, or a future nothing
 * completes breaks the ring. A ring through asyncio.wait closes when it
 * waits for all its tasks, or for the first with every one on the ring, and
 * never with a timeout; one through a gather or TaskGroup only with every
 * member that has not ended on it. */
#include <stdio.h>
#include <string.h>

#include "../../src/ana/ana.h"
#include "unit.h"

typedef struct tm {
    aio_model m;
} tm;

static void tm_init(tm *b) {
    memset(b, 0, sizeof *b);
    vec_init(&b->m.threads, sizeof(aio_thread));
    vec_init(&b->m.tasks, sizeof(aio_task));
    vec_init(&b->m.loops, sizeof(aio_loop));
    vec_init(&b->m.resources, sizeof(aio_resource));
    vec_init(&b->m.warnings, sizeof(char *));
}

static aio_thread *tm_thread(tm *b, int64_t native, const char *name, aio_kind kind, uint64_t on,
                             bool timeout) {
    aio_thread *th = vec_push(&b->m.threads);
    if (th) {
        memset(th, 0, sizeof *th);
        th->native_id = native;
        snprintf(th->name, sizeof th->name, "%s", name);
        vec_init(&th->frames, sizeof(aio_frame));
        th->waits_kind = kind;
        th->waits_on = on;
        th->waits_timeout = timeout;
        snprintf(th->waits_type, sizeof th->waits_type, "_thread.lock");
    }
    return th;
}

static aio_resource *tm_res(tm *b, uint64_t id, aio_kind kind) {
    aio_resource *r = vec_push(&b->m.resources);
    if (r) {
        aio_resource_init(r, id, kind);
    }
    return r;
}

static aio_task *tm_task(tm *b, uint64_t id, const char *name, aio_kind kind, uint64_t on) {
    aio_task *t = vec_push(&b->m.tasks);
    if (t) {
        memset(t, 0, sizeof *t);
        t->id = id;
        t->name = aio_text(&b->m, name); /* the model owns its names */
        t->state = AIO_STATE_PENDING;
        t->waits_kind = kind;
        t->waits_on = on;
        vec_init(&t->frames, sizeof(aio_frame));
        vec_init(&t->awaits, sizeof(uint64_t));
        vec_init(&t->awaited_by, sizeof(uint64_t));
        u64vec_push(&t->awaits, on);
    }
    return t;
}

/* Two threads, two locks in opposite order; `timeout`: the second waits
 * with one. */
static void tm_lock_order(tm *b, bool timeout) {
    tm_init(b);
    tm_thread(b, 11, "left", AIO_KIND_THREAD_LOCK, 0xb000, false);
    tm_thread(b, 12, "right", AIO_KIND_THREAD_LOCK, 0xa000, timeout);
    tm_thread(b, 13, "bystander", AIO_KIND_THREAD_LOCK, 0xa000, false);
    u64vec_push(&tm_res(b, 0xa000, AIO_KIND_THREAD_LOCK)->thread_holders, 11);
    u64vec_push(&tm_res(b, 0xb000, AIO_KIND_THREAD_LOCK)->thread_holders, 12);
}

static const ana_diagnosis *tm_only(const ana_result *r) {
    return r->diagnoses.len == 1 ? VEC_AT(&r->diagnoses, ana_diagnosis, 0) : NULL;
}

TEST(thread_lock_order_is_one_thread_lock_cycle_of_its_two_threads) {
    tm b;
    tm_lock_order(&b, false);
    ana_result r;
    CHECK_EQ(ana_diagnose(&b.m, &r), ERR_OK);
    const ana_diagnosis *d = tm_only(&r);
    if (CHECK(d != NULL)) {
        CHECK_EQ(d->kind, ANA_THREAD_LOCK_CYCLE);
        CHECK_EQ(d->tasks.len, 0);
        CHECK_EQ(d->threads.len, 2);
        CHECK(u64vec_has(&d->threads, 11) && u64vec_has(&d->threads, 12));
        CHECK(!u64vec_has(&d->threads, 13));
        CHECK_EQ(d->resources.len, 2);
        CHECK(strstr(d->summary, "held by thread 11 'left'") != NULL);
        CHECK(strstr(d->summary, "lock-order deadlock between threads") != NULL);
        CHECK(ana_kind_is_deadlock(d->kind));
    }
    ana_result_free(&r);
    aio_model_free(&b.m);
}

TEST(thread_lock_order_with_a_timeout_is_no_cycle) {
    tm b;
    tm_lock_order(&b, true);
    ana_result r;
    CHECK_EQ(ana_diagnose(&b.m, &r), ERR_OK);
    CHECK_EQ(r.diagnoses.len, 0);
    ana_result_free(&r);
    aio_model_free(&b.m);
}

TEST(thread_lock_held_also_by_an_unknown_thread_is_no_cycle) {
    tm b;
    tm_lock_order(&b, false);
    /* A holder that is no thread of the model may release it. */
    u64vec_push(&VEC_AT(&b.m.resources, aio_resource, 0)->thread_holders, 99);
    ana_result r;
    CHECK_EQ(ana_diagnose(&b.m, &r), ERR_OK);
    CHECK_EQ(r.diagnoses.len, 0);
    ana_result_free(&r);
    aio_model_free(&b.m);
}

/* holder (task 1) holds lock L and awaits executor future AF mirroring CF1,
 * which worker 21 runs; the worker waits on CF2, run_coroutine_threadsafe's
 * future for task 2, which waits for L. */
static void tm_executor_ring(tm *b, bool member) {
    tm_init(b);
    tm_task(b, 0x1000, "holder", AIO_KIND_EXECUTOR, 0xaf00);
    tm_task(b, 0x2000, "needs", AIO_KIND_LOCK, 0x10c0);
    aio_resource *lock = tm_res(b, 0x10c0, AIO_KIND_LOCK);
    u64vec_push(&lock->holders, 0x1000);
    aio_site *site = vec_push(&lock->holder_sites);
    memset(site, 0, sizeof *site);
    u64vec_push(&lock->waiters, 0x2000);
    tm_res(b, 0xaf00, AIO_KIND_EXECUTOR)->chained = 0xcf10;
    u64vec_push(&tm_res(b, 0xcf10, AIO_KIND_CFUTURE)->thread_holders, 21);
    aio_resource *cf2 = tm_res(b, 0xcf20, AIO_KIND_CFUTURE);
    if (member) {
        u64vec_push(&cf2->members, 0x2000);
    }
    aio_thread *w = tm_thread(b, 21, "asyncio_0", AIO_KIND_CFUTURE, 0xcf20, false);
    snprintf(w->work_fn, sizeof w->work_fn, "job");
    w->work_future = 0xcf10;
}

TEST(executor_ring_through_a_worker_is_a_lock_cycle_naming_the_worker) {
    tm b;
    tm_executor_ring(&b, true);
    ana_result r;
    CHECK_EQ(ana_diagnose(&b.m, &r), ERR_OK);
    const ana_diagnosis *d = tm_only(&r);
    if (CHECK(d != NULL)) {
        CHECK_EQ(d->kind, ANA_LOCK_CYCLE);
        CHECK_EQ(d->tasks.len, 2);
        CHECK_EQ(d->threads.len, 1);
        CHECK(u64vec_has(&d->threads, 21));
        CHECK_EQ(d->resources.len, 4);
        CHECK(strstr(d->summary, "run by thread 21 'asyncio_0' in job()") != NULL);
        CHECK(strstr(d->summary, "of task 'needs'") != NULL);
    }
    ana_result_free(&r);
    aio_model_free(&b.m);
}

TEST(executor_ring_whose_future_stands_for_no_task_is_no_cycle) {
    tm b;
    tm_executor_ring(&b, false);
    ana_result r;
    CHECK_EQ(ana_diagnose(&b.m, &r), ERR_OK);
    CHECK_EQ(r.diagnoses.len, 0);
    ana_result_free(&r);
    aio_model_free(&b.m);
}

/* waiter (0x1000) in a combinator (0xe000) for its members: back (0x2000),
 * which awaits waiter, and, when `bystander`, sleeper (0x3000), which
 * sleeps on a timer and so will end. */
static void tm_ring(tm *b, aio_kind kind, aio_wait_when when, bool timed, bool bystander) {
    tm_init(b);
    tm_task(b, 0x1000, "waiter", kind, 0xe000);
    tm_task(b, 0x2000, "back", AIO_KIND_TASK, 0x1000);
    aio_resource *w = tm_res(b, 0xe000, kind);
    w->wait_when = when;
    w->wait_timed = timed;
    u64vec_push(&w->members, 0x2000);
    if (bystander) {
        tm_task(b, 0x3000, "sleeper", AIO_KIND_SLEEP, 0xf000);
        tm_res(b, 0xf000, AIO_KIND_SLEEP);
        u64vec_push(&VEC_AT(&b->m.resources, aio_resource, 0)->members, 0x3000);
    }
}

/* The model's diagnoses: one await-cycle of waiter and back through the
 * combinator when `cycle`, none otherwise; frees the model. */
static void tm_check_ring(tm *b, bool cycle) {
    ana_result r;
    CHECK_EQ(ana_diagnose(&b->m, &r), ERR_OK);
    const ana_diagnosis *d = tm_only(&r);
    if (!cycle) {
        CHECK_EQ(r.diagnoses.len, 0);
    } else if (CHECK(d != NULL)) {
        CHECK_EQ(d->kind, ANA_AWAIT_CYCLE);
        CHECK_EQ(d->tasks.len, 2);
        CHECK(u64vec_has(&d->tasks, 0x1000) && u64vec_has(&d->tasks, 0x2000));
        CHECK(u64vec_has(&d->resources, 0xe000));
    }
    ana_result_free(&r);
    aio_model_free(&b->m);
}

TEST(asyncio_wait_ring_closes_by_its_return_when_and_never_with_a_timeout) {
    static const struct {
        const char *name;
        aio_wait_when when;
        bool timed, bystander, cycle;
    } cases[] = {
        {"all, a member off the ring", AIO_WAIT_ALL, false, true, true},
        {"first, a member off the ring", AIO_WAIT_FIRST, false, true, false},
        {"error, a member off the ring", AIO_WAIT_ERROR, false, true, false},
        {"first, every member on the ring", AIO_WAIT_FIRST, false, false, true},
        {"all with a timeout", AIO_WAIT_ALL, true, false, false},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        unit_ctx("%s", cases[i].name);
        tm b;
        tm_ring(&b, AIO_KIND_WAIT, cases[i].when, cases[i].timed, cases[i].bystander);
        tm_check_ring(&b, cases[i].cycle);
    }
}

TEST(gather_or_taskgroup_ring_closes_only_with_every_member_not_ended_on_it) {
    static const struct {
        const char *name;
        aio_kind kind;
        bool bystander, ended, cycle;
    } cases[] = {
        {"gather, its one member on the ring", AIO_KIND_GATHER, false, false, true},
        {"gather, a pending member off the ring", AIO_KIND_GATHER, true, false, false},
        {"gather, an ended member off the ring", AIO_KIND_GATHER, true, true, true},
        {"TaskGroup, a pending member off the ring", AIO_KIND_TASKGROUP, true, false, false},
        {"TaskGroup, its one member on the ring", AIO_KIND_TASKGROUP, false, false, true},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        unit_ctx("%s", cases[i].name);
        tm b;
        tm_ring(&b, cases[i].kind, AIO_WAIT_ALL, false, cases[i].bystander);
        VEC_AT(&b.m.resources, aio_resource, 0)->members_ended = cases[i].ended;
        tm_check_ring(&b, cases[i].cycle);
    }
}

/* Walking runtime -> interpreters -> thread states over hand-built images:
 * 3.11 (GIL in the runtime), 3.12 (frame through cframe) and 3.14 (current
 * frame in the thread state); cyclic and broken lists; thread names. */
#include <string.h>

#include "fixture.h"
#include "unit.h"

/* Fixed addresses for the runtime, interpreters, thread states and frames,
 * far from the fixture's object heap. */
#define RUNTIME 0x30000000ull
#define INTERP1 0x31000000ull
#define INTERP2 0x31100000ull
#define TS1 0x32000000ull
#define TS2 0x32010000ull
#define TS3 0x32020000ull
#define CFRAME1 0x33000000ull
#define CFRAME_BELOW 0x33100000ull
#define FRAME1 0x34000000ull
#define FRAME_OUTER 0x34100000ull
#define GIL 0x35000000ull
/* Bytes we map for each: beyond the last field the readers touch. */
#define RUNTIME_SIZE 1024
#define INTERP_SIZE 8192
#define TS_SIZE 512
/* Two interpreters with a thread each take about 15 reads to walk; going
 * round their cycle until a walk limit would take well over a thousand. */
#define CYCLE_WALK_READS_MAX 100

/* gil_holder: the thread state holding the GIL when the runtime embeds it
 * (3.11), 0 for none. */
static void put_runtime(fx *f, uint64_t interp, uint64_t gil_holder) {
    const py_layout *L = &f->t.L;
    uint8_t b[RUNTIME_SIZE] = {0};
    fx_w64(b, (size_t)L->rt_interp_head, interp);
    if (L->rt_gil != PY_NONE && gil_holder) {
        fx_w64(b, (size_t)(L->rt_gil + L->gil_last_holder), gil_holder);
        fx_w32(b, (size_t)(L->rt_gil + L->gil_locked), 1);
    }
    fx_put_at(f, RUNTIME, b, sizeof b);
    f->t.runtime = RUNTIME;
}

static void put_interp(fx *f, uint64_t at, uint64_t next, int64_t id, uint64_t threads,
                       uint64_t modules) {
    const py_layout *L = &f->t.L;
    static uint8_t b[INTERP_SIZE];
    memset(b, 0, sizeof b);
    fx_w64(b, (size_t)L->is_next, next);
    fx_w64(b, (size_t)L->is_id, (uint64_t)id);
    fx_w64(b, (size_t)L->is_threads_head, threads);
    fx_w64(b, (size_t)L->is_modules, modules);
    if (L->is_gil_ptr != PY_NONE) {
        fx_w64(b, (size_t)L->is_gil_ptr, GIL);
    }
    fx_put_at(f, at, b, sizeof b);
}

/* frame is the innermost frame: through a cframe (3.11, 3.12) or direct.
 * outer, when not 0 (3.11, 3.12): the current frame of the C frame below,
 * the frame that entered the thread's innermost evaluation loop. */
static void put_ts_entered(fx *f, uint64_t at, uint64_t next, uint64_t interp, int64_t native_id,
                           uint64_t thread_id, uint64_t frame, uint64_t outer) {
    const py_layout *L = &f->t.L;
    uint8_t b[TS_SIZE] = {0};
    fx_w64(b, (size_t)L->ts_next, next);
    fx_w64(b, (size_t)L->ts_interp, interp);
    fx_w64(b, (size_t)L->ts_native_id, (uint64_t)native_id);
    fx_w64(b, (size_t)L->ts_thread_id, thread_id);
    if (L->ts_current_frame != PY_NONE) {
        fx_w64(b, (size_t)L->ts_current_frame, frame);
    } else if (frame) {
        uint64_t cframe = CFRAME1 + (at - TS1);
        uint8_t cf[32] = {0};
        fx_w64(cf, (size_t)L->cf_current_frame, frame);
        if (outer) {
            uint64_t below = CFRAME_BELOW + (at - TS1);
            uint8_t bf[32] = {0};
            fx_w64(bf, (size_t)L->cf_current_frame, outer);
            fx_put_at(f, below, bf, sizeof bf);
            fx_w64(cf, (size_t)L->cf_previous, below);
        }
        fx_put_at(f, cframe, cf, sizeof cf);
        fx_w64(b, (size_t)L->ts_cframe, cframe);
    }
    fx_put_at(f, at, b, sizeof b);
}

static void put_ts(fx *f, uint64_t at, uint64_t next, uint64_t interp, int64_t native_id,
                   uint64_t thread_id, uint64_t frame) {
    put_ts_entered(f, at, next, interp, native_id, thread_id, frame, 0);
}

/* The GIL state interpreters point at (3.12+): locked, held by holder. */
static void put_gil(fx *f, uint64_t holder) {
    uint8_t b[64] = {0};
    fx_w64(b, (size_t)f->t.L.gil_last_holder, holder);
    fx_w32(b, (size_t)f->t.L.gil_locked, 1);
    fx_put_at(f, GIL, b, sizeof b);
}

static const py_thread *thread_at(const py_threads_result *r, size_t i) {
    return i < r->threads.len ? VEC_AT(&r->threads, py_thread, i) : NULL;
}

TEST(threads_312_cyclic_thread_list_stops_with_two_threads_truncated) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    put_runtime(&f, INTERP1, 0);
    put_interp(&f, INTERP1, 0, 0, TS1, 0);
    put_ts(&f, TS1, TS2, INTERP1, 101, 0x1000, FRAME1);
    put_ts(&f, TS2, TS1, INTERP1, 102, 0x2000, 0);
    py_threads_result r;
    CHECK_ERR(py_threads(&f.t, &r), ERR_OK);
    CHECK_EQ(r.threads.len, 2);
    CHECK(r.truncated);
    const py_thread *a = thread_at(&r, 0), *b = thread_at(&r, 1);
    if (CHECK(a && b)) {
        CHECK_EQ(a->addr, TS1);
        CHECK_EQ(a->native_id, 101);
        CHECK_EQ(a->frame, FRAME1);
        CHECK_EQ(b->addr, TS2);
        CHECK_EQ(b->native_id, 102);
        CHECK_EQ(b->frame, 0);
    }
    py_threads_free(&r);
    fx_close(&f);
}

TEST(threads_312_reads_ids_frame_through_cframe_and_gil_holder) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    put_runtime(&f, INTERP1, 0);
    put_interp(&f, INTERP1, 0, 7, TS1, 0);
    put_ts(&f, TS1, TS2, INTERP1, 4001, 0x7f00aa, FRAME1);
    put_ts(&f, TS2, 0, INTERP1, 4002, 0x7f00bb, 0);
    put_gil(&f, TS2);
    py_threads_result r;
    CHECK_ERR(py_threads(&f.t, &r), ERR_OK);
    CHECK_EQ(r.threads.len, 2);
    CHECK(!r.truncated);
    const py_thread *a = thread_at(&r, 0), *b = thread_at(&r, 1);
    if (CHECK(a && b)) {
        CHECK_EQ(a->interp, INTERP1);
        CHECK_EQ(a->interp_id, 7);
        CHECK_EQ(a->thread_id, 0x7f00aa);
        CHECK_EQ(a->frame, FRAME1);
        CHECK(!a->holds_gil);
        CHECK_EQ(b->native_id, 4002);
        CHECK(b->holds_gil);
        CHECK_STR(a->name, "");
    }
    py_threads_free(&r);
    fx_close(&f);
}

TEST(threads_311_312_read_the_frame_that_entered_the_innermost_loop) {
    for (int minor = 11; minor <= 12; minor++) {
        fx f;
        if (!CHECK(fx_open(&f, minor))) {
            return;
        }
        put_runtime(&f, INTERP1, 0);
        put_interp(&f, INTERP1, 0, 0, TS1, 0);
        put_ts_entered(&f, TS1, TS2, INTERP1, 1, 0x1000, FRAME1, FRAME_OUTER);
        /* A thread in its first loop: the C frame below is the root one. */
        put_ts(&f, TS2, 0, INTERP1, 2, 0x2000, FRAME1);
        py_threads_result r;
        CHECK_ERR(py_threads(&f.t, &r), ERR_OK);
        const py_thread *a = thread_at(&r, 0), *b = thread_at(&r, 1);
        if (CHECK(a && b)) {
            CHECK_EQ(a->frame, FRAME1);
            CHECK_EQ(a->outer_frame, FRAME_OUTER);
            CHECK_EQ(b->outer_frame, 0);
        }
        py_threads_free(&r);
        fx_close(&f);
    }
}

TEST(threads_311_gil_lives_in_the_runtime) {
    fx f;
    if (!CHECK(fx_open(&f, 11))) {
        return;
    }
    put_runtime(&f, INTERP1, TS1);
    put_interp(&f, INTERP1, 0, 0, TS1, 0);
    put_ts(&f, TS1, 0, INTERP1, 55, 0x55, FRAME1);
    py_threads_result r;
    CHECK_ERR(py_threads(&f.t, &r), ERR_OK);
    const py_thread *a = thread_at(&r, 0);
    if (CHECK(a != NULL)) {
        CHECK(a->holds_gil);
        CHECK_EQ(a->frame, FRAME1); /* 3.11 cframe's current_frame is at 8 */
        CHECK_EQ(a->native_id, 55);
    }
    py_threads_free(&r);
    fx_close(&f);
}

TEST(threads_314_reads_current_frame_from_the_thread_state) {
    fx f;
    if (!CHECK(fx_open(&f, 14))) {
        return;
    }
    put_runtime(&f, INTERP1, 0);
    put_interp(&f, INTERP1, INTERP2, 0, TS1, 0);
    put_interp(&f, INTERP2, 0, 1, TS3, 0);
    put_ts(&f, TS1, 0, INTERP1, 9001, 0x91, FRAME1);
    put_ts(&f, TS3, 0, INTERP2, 9003, 0x93, FRAME1 + 0x100);
    py_threads_result r;
    CHECK_ERR(py_threads(&f.t, &r), ERR_OK);
    CHECK_EQ(r.threads.len, 2);
    CHECK(!r.truncated);
    const py_thread *a = thread_at(&r, 0), *b = thread_at(&r, 1);
    if (CHECK(a && b)) {
        CHECK_EQ(a->frame, FRAME1);
        CHECK_EQ(a->outer_frame, 0); /* 3.13+ have no C frames to check by */
        CHECK_EQ(a->thread_id, 0x91);
        CHECK_EQ(b->frame, FRAME1 + 0x100);
        CHECK_EQ(b->interp, INTERP2);
        CHECK_EQ(b->interp_id, 1);
    }
    py_threads_free(&r);
    fx_close(&f);
}

TEST(threads_cyclic_interpreter_list_is_walked_once_and_truncated) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    put_runtime(&f, INTERP1, 0);
    put_interp(&f, INTERP1, INTERP2, 0, TS1, 0);
    put_interp(&f, INTERP2, INTERP1, 1, TS2, 0);
    put_ts(&f, TS1, 0, INTERP1, 1, 1, 0);
    put_ts(&f, TS2, 0, INTERP2, 2, 2, 0);
    py_threads_result r;
    uint64_t reads = f.t.m->reads;
    CHECK_ERR(py_threads(&f.t, &r), ERR_OK);
    CHECK(f.t.m->reads - reads < CYCLE_WALK_READS_MAX);
    CHECK_EQ(r.threads.len, 2);
    CHECK(r.truncated);
    py_threads_free(&r);
    fx_close(&f);
}

TEST(threads_unreadable_thread_state_truncates_the_list) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    put_runtime(&f, INTERP1, 0);
    put_interp(&f, INTERP1, 0, 0, TS1, 0);
    put_ts(&f, TS1, TS2 /* not mapped */, INTERP1, 1, 1, 0);
    py_threads_result r;
    CHECK_ERR(py_threads(&f.t, &r), ERR_OK);
    CHECK_EQ(r.threads.len, 1);
    CHECK(r.truncated);
    py_threads_free(&r);
    fx_close(&f);
}

TEST(threads_unreadable_runtime_is_a_core_error) {
    fx f;
    if (!CHECK(fx_open(&f, 14))) {
        return;
    }
    f.t.runtime = RUNTIME; /* nothing mapped there */
    py_threads_result r;
    CHECK_ERR(py_threads(&f.t, &r), ERR_CORE);
    CHECK_EQ(f.err.code, ERR_CORE);
    CHECK(strstr(f.err.msg, "0x30000000") != NULL);
    CHECK_EQ(r.threads.len, 0);
    py_threads_free(&r);
    fx_close(&f);
}

TEST(threads_312_names_come_from_threading_active) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    const uint64_t ident = 140000000000ull; /* a pthread_t, two digits as an int */
    /* A Thread instance: managed values (tagged) with shared keys _name. */
    const uint64_t shared[] = {fx_str(&f, "_name")};
    uint8_t tb[FX_TYPE_SIZE] = {0};
    fx_w64(tb, (size_t)f.t.L.tp_flags, FX_TPFLAGS_MANAGED_DICT | FX_TPFLAGS_HEAPTYPE);
    fx_w64(tb, (size_t)f.t.L.ht_cached_keys, fx_keys(&f, 2, shared, NULL, 1));
    uint64_t thread_type = fx_put(&f, tb, sizeof tb);
    const uint64_t name[] = {fx_str(&f, "worker-1")};
    uint64_t values = fx_values(&f, name, 1);
    uint8_t ob[48] = {0};
    fx_w64(ob, 8, values - 1); /* -24 from the object */
    fx_w64(ob, 32 + 8, thread_type);
    uint64_t thread = fx_put(&f, ob, sizeof ob) + 32;
    /* threading._active = {ident: thread}, an int-keyed (general) dict. */
    const uint64_t akeys[] = {fx_long(&f, (int64_t)ident)}, avals[] = {thread};
    uint64_t active = fx_dict(&f, fx_keys(&f, 0, akeys, avals, 1), 0);
    const uint64_t mkeys[] = {fx_str(&f, "_active")}, mvals[] = {active};
    uint64_t mod_dict = fx_dict(&f, fx_keys(&f, 1, mkeys, mvals, 1), 0);
    uint8_t mod[32] = {0};
    fx_w64(mod, (size_t)f.t.L.mod_dict, mod_dict);
    uint64_t module = fx_put(&f, mod, sizeof mod);
    const uint64_t skeys[] = {fx_str(&f, "sys"), fx_str(&f, "threading")};
    const uint64_t svals[] = {fx_put(&f, mod, sizeof mod), module};
    uint64_t modules = fx_dict(&f, fx_keys(&f, 1, skeys, svals, 2), 0);

    put_runtime(&f, INTERP1, 0);
    put_interp(&f, INTERP1, 0, 0, TS1, modules);
    put_ts(&f, TS1, TS2, INTERP1, 1, 0x1234, 0);
    put_ts(&f, TS2, 0, INTERP1, 2, ident, 0);
    py_threads_result r;
    CHECK_ERR(py_threads(&f.t, &r), ERR_OK);
    const py_thread *a = thread_at(&r, 0), *b = thread_at(&r, 1);
    if (CHECK(a && b)) {
        CHECK_STR(a->name, "");
        CHECK_STR(b->name, "worker-1");
    }
    py_threads_free(&r);
    fx_close(&f);
}

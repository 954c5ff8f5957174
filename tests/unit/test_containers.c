/* tuple, list, set and deque readers on hand-built objects: item offsets
 * per version, sizes that contradict the object, empty and deleted set
 * slots, and deque block chains that are long, broken or cyclic. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture.h"
#include "unit.h"

/* Items in a deque block (CPython's BLOCKLEN); a block holds them between its
 * left and right links. */
#define DEQUE_BLOCKLEN 64
/* The cyclic walk at the largest accepted size takes well under a second,
 * even under ASan; this much CPU time means it is not bounded. */
#define DEQUE_CYCLE_SECONDS_MAX 20.0

/* A distinct, aligned, fake object address for item i. */
static uint64_t item(size_t i) {
    return 0x7f0000000000ull + i * 16;
}

/* True when v holds item(first) .. item(first + n - 1). */
static bool holds_items(const vec *v, size_t first, size_t n) {
    if (v->len != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (*VEC_AT(v, uint64_t, i) != item(first + i)) {
            return false;
        }
    }
    return true;
}

static uint64_t put_tuple(fx *f, uint64_t size, size_t n) {
    const py_layout *L = &f->t.L;
    uint8_t b[256] = {0};
    size_t len = (size_t)L->tuple_items + n * 8;
    if (!CHECK(len <= sizeof b)) {
        return 0;
    }
    fx_w64(b, (size_t)L->ob_type, f->t.types.tuple);
    fx_w64(b, (size_t)L->ob_size, size);
    for (size_t i = 0; i < n; i++) {
        fx_w64(b, (size_t)L->tuple_items + i * 8, item(i));
    }
    return fx_put(f, b, len);
}

TEST(tuple_items_read_in_every_layout) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        vec out;
        vec_init(&out, sizeof(uint64_t));
        CHECK_ERR(py_tuple_items(&f.t, put_tuple(&f, 5, 5), &out), ERR_OK);
        CHECK(holds_items(&out, 0, 5));
        out.len = 0;
        CHECK_ERR(py_tuple_items(&f.t, put_tuple(&f, 0, 0), &out), ERR_OK);
        CHECK_EQ(out.len, 0);
        vec_free(&out);
        fx_close(&f);
    }
}

TEST(tuple_items_start_at_24_in_311_and_32_in_314) {
    /* One set of bytes: refcnt, type, size 2, then item(0), item(1), item(2). */
    uint8_t b[48] = {0};
    fx_w64(b, 16, 2);
    for (size_t i = 0; i < 3; i++) {
        fx_w64(b, 24 + i * 8, item(i));
    }
    const int minors[] = {11, 14};
    const size_t first[] = {0, 1};
    for (size_t v = 0; v < ARRAY_LEN(minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, minors[v]))) {
            return;
        }
        vec out;
        vec_init(&out, sizeof(uint64_t));
        CHECK_ERR(py_tuple_items(&f.t, fx_put(&f, b, sizeof b), &out), ERR_OK);
        CHECK(holds_items(&out, first[v], 2));
        vec_free(&out);
        fx_close(&f);
    }
}

TEST(tuple_with_absurd_or_unmapped_size_fails) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    vec out;
    vec_init(&out, sizeof(uint64_t));
    CHECK_ERR(py_tuple_items(&f.t, put_tuple(&f, (uint64_t)PY_CONTAINER_MAX + 1, 2), &out),
              ERR_LIMIT);
    CHECK_ERR(py_tuple_items(&f.t, put_tuple(&f, (uint64_t)-1, 2), &out), ERR_LIMIT);
    CHECK_ERR(py_tuple_items(&f.t, put_tuple(&f, 3, 2), &out), ERR_READ);
    CHECK_ERR(py_tuple_items(&f.t, 0x1000, &out), ERR_READ);
    vec_free(&out);
    fx_close(&f);
}

static uint64_t put_list(fx *f, uint64_t size, uint64_t allocated, uint64_t items) {
    const py_layout *L = &f->t.L;
    uint8_t b[40] = {0};
    fx_w64(b, (size_t)L->ob_type, f->t.types.list);
    fx_w64(b, (size_t)L->ob_size, size);
    fx_w64(b, (size_t)L->list_items, items);
    fx_w64(b, (size_t)L->list_allocated, allocated);
    return fx_put(f, b, sizeof b);
}

TEST(list_items_come_from_the_item_array) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        uint64_t arr[8];
        for (size_t i = 0; i < 8; i++) {
            arr[i] = item(i);
        }
        uint64_t items = fx_put(&f, arr, sizeof arr);
        vec out;
        vec_init(&out, sizeof(uint64_t));
        CHECK_ERR(py_list_items(&f.t, put_list(&f, 3, 8, items), &out), ERR_OK);
        CHECK(holds_items(&out, 0, 3));
        out.len = 0;
        CHECK_ERR(py_list_items(&f.t, put_list(&f, 0, 0, 0), &out), ERR_OK);
        CHECK_EQ(out.len, 0);
        vec_free(&out);
        fx_close(&f);
    }
}

TEST(list_size_above_allocated_or_null_items_is_corrupt) {
    fx f;
    if (!CHECK(fx_open(&f, 14))) {
        return;
    }
    uint64_t arr[4] = {item(0), item(1), item(2), item(3)};
    uint64_t items = fx_put(&f, arr, sizeof arr);
    vec out;
    vec_init(&out, sizeof(uint64_t));
    CHECK_ERR(py_list_items(&f.t, put_list(&f, 5, 4, items), &out), ERR_CORRUPT);
    CHECK_ERR(py_list_items(&f.t, put_list(&f, (uint64_t)-1, 4, items), &out), ERR_CORRUPT);
    CHECK_ERR(py_list_items(&f.t, put_list(&f, 2, 4, 0), &out), ERR_CORRUPT);
    CHECK_EQ(out.len, 0);
    /* Consistent sizes but an item array shorter than claimed. */
    CHECK_ERR(py_list_items(&f.t, put_list(&f, 6, 8, items), &out), ERR_READ);
    vec_free(&out);
    fx_close(&f);
}

static uint64_t put_set(fx *f, uint64_t used, uint64_t mask, uint64_t table) {
    const py_layout *L = &f->t.L;
    uint8_t b[200] = {0};
    fx_w64(b, (size_t)L->ob_type, f->t.types.set);
    fx_w64(b, 16, used); /* fill */
    fx_w64(b, (size_t)L->set_used, used);
    fx_w64(b, (size_t)L->set_mask, mask);
    fx_w64(b, (size_t)L->set_table, table);
    return fx_put(f, b, sizeof b);
}

TEST(set_items_skip_empty_and_deleted_slots) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        const uint64_t dummy = 0x7e0000000000ull;
        /* {key, hash} x 8: items 0..2 among an empty and a deleted slot. */
        const uint64_t table[16] = {
            item(0), 11, 0, 0, dummy, (uint64_t)-1, item(1), 12, 0, 0, 0, 0, item(2), 13, 0, 0,
        };
        uint64_t tab = fx_put(&f, table, sizeof table);
        vec out;
        vec_init(&out, sizeof(uint64_t));
        CHECK_ERR(py_set_items(&f.t, put_set(&f, 3, 7, tab), &out), ERR_OK);
        CHECK(holds_items(&out, 0, 3));
        vec_free(&out);
        fx_close(&f);
    }
}

TEST(set_with_absurd_mask_or_table_is_corrupt) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    uint64_t table[16] = {item(0), 1};
    uint64_t tab = fx_put(&f, table, sizeof table);
    vec out;
    vec_init(&out, sizeof(uint64_t));
    CHECK_ERR(py_set_items(&f.t, put_set(&f, 1, ((uint64_t)1 << 40) - 1, tab), &out), ERR_CORRUPT);
    CHECK_ERR(py_set_items(&f.t, put_set(&f, 1, UINT64_MAX, tab), &out), ERR_CORRUPT);
    CHECK_ERR(py_set_items(&f.t, put_set(&f, 1, 6, tab), &out), ERR_CORRUPT);
    CHECK_ERR(py_set_items(&f.t, put_set(&f, 9, 7, tab), &out), ERR_CORRUPT);
    CHECK_ERR(py_set_items(&f.t, put_set(&f, 1, 7, 0), &out), ERR_CORRUPT);
    CHECK_EQ(out.len, 0);
    /* A plausible mask over a table that is not all there. */
    CHECK_ERR(py_set_items(&f.t, put_set(&f, 1, 15, tab), &out), ERR_READ);
    vec_free(&out);
    fx_close(&f);
}

/* A deque whose blocks hold item(0), item(1), ... from leftindex on. */
static uint64_t put_deque(fx *f, int64_t size, uint64_t left, uint64_t right, int64_t leftindex,
                          int64_t rightindex) {
    const py_layout *L = &f->t.L;
    uint8_t b[96] = {0};
    fx_w64(b, (size_t)L->ob_type, f->t.types.type); /* any type: not checked */
    fx_w64(b, (size_t)L->ob_size, (uint64_t)size);
    fx_w64(b, (size_t)L->deque_left, left);
    fx_w64(b, (size_t)L->deque_right, right);
    fx_w64(b, (size_t)L->deque_leftindex, (uint64_t)leftindex);
    fx_w64(b, (size_t)L->deque_rightindex, (uint64_t)rightindex);
    return fx_put(f, b, sizeof b);
}

/* Places nblocks linked blocks at consecutive fixed addresses, numbering
 * items from slot first_index of the first block; returns the first. */
static uint64_t put_blocks(fx *f, uint64_t at, size_t nblocks, size_t first_index) {
    uint64_t blk[DEQUE_BLOCKLEN + 2];
    size_t n = 0;
    for (size_t k = 0; k < nblocks; k++) {
        uint64_t addr = at + k * 0x1000;
        blk[0] = k ? addr - 0x1000 : 0;
        for (size_t i = 0; i < DEQUE_BLOCKLEN; i++) {
            blk[1 + i] = k == 0 && i < first_index ? 0 : item(n++);
        }
        blk[DEQUE_BLOCKLEN + 1] = k + 1 < nblocks ? addr + 0x1000 : 0;
        fx_put_at(f, addr, blk, sizeof blk);
    }
    return at;
}

TEST(deque_items_follow_three_blocks) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        uint64_t first = put_blocks(&f, 0x20000000, 3, 62);
        /* 2 items in the first block, 64 in the second, 5 in the third. */
        uint64_t dq = put_deque(&f, 71, first, first + 0x2000, 62, 4);
        vec out;
        vec_init(&out, sizeof(uint64_t));
        CHECK_ERR(py_deque_items(&f.t, dq, &out), ERR_OK);
        CHECK(holds_items(&out, 0, 71));
        out.len = 0;
        CHECK_ERR(py_deque_items(&f.t, put_deque(&f, 0, first, first, 31, 30), &out), ERR_OK);
        CHECK_EQ(out.len, 0);
        vec_free(&out);
        fx_close(&f);
    }
}

TEST(deque_broken_chain_or_bad_header_fails) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    uint64_t first = put_blocks(&f, 0x20000000, 2, 0);
    vec out;
    vec_init(&out, sizeof(uint64_t));
    /* More items than the two blocks hold: the chain ends in NULL. */
    CHECK_ERR(py_deque_items(&f.t, put_deque(&f, 200, first, first, 0, 0), &out), ERR_CORRUPT);
    out.len = 0;
    CHECK_ERR(py_deque_items(&f.t, put_deque(&f, 10, 0x30000000, 0, 0, 9), &out), ERR_READ);
    CHECK_ERR(py_deque_items(&f.t, put_deque(&f, 10, 0, 0, 0, 9), &out), ERR_CORRUPT);
    CHECK_ERR(py_deque_items(&f.t, put_deque(&f, -1, first, first, 0, 0), &out), ERR_CORRUPT);
    CHECK_ERR(py_deque_items(&f.t, put_deque(&f, 1, first, first, 64, 0), &out), ERR_CORRUPT);
    CHECK_ERR(py_deque_items(&f.t, put_deque(&f, 1, first, first, -1, 0), &out), ERR_CORRUPT);
    CHECK_ERR(py_deque_items(&f.t, put_deque(&f, (int64_t)PY_CONTAINER_MAX + 1, first, first, 0, 0),
                             &out),
              ERR_CORRUPT);
    vec_free(&out);
    fx_close(&f);
}

TEST(deque_cyclic_block_chain_is_corrupt_after_one_block) {
    fx f;
    if (!CHECK(fx_open(&f, 14))) {
        return;
    }
    /* One block whose right link is itself; the walk may only go on for as
     * many items as the largest size the reader accepts. */
    uint64_t blk[DEQUE_BLOCKLEN + 2] = {0};
    const uint64_t at = 0x20000000;
    blk[0] = at;
    blk[DEQUE_BLOCKLEN + 1] = at;
    for (size_t i = 0; i < DEQUE_BLOCKLEN; i++) {
        blk[1 + i] = item(i);
    }
    fx_put_at(&f, at, blk, sizeof blk);
    vec out;
    vec_init(&out, sizeof(uint64_t));
    clock_t t0 = clock();
    err_t e = py_deque_items(&f.t, put_deque(&f, INT64_MAX, at, at, 0, 0), &out);
    CHECK_ERR(e, ERR_CORRUPT);
    out.len = 0;
    e = py_deque_items(&f.t, put_deque(&f, PY_CONTAINER_MAX, at, at, 0, 0), &out);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    /* The chain ends (loops) at the right block long before its items do. */
    CHECK_ERR(e, ERR_CORRUPT);
    CHECK(out.len <= DEQUE_BLOCKLEN);
    CHECK(secs < DEQUE_CYCLE_SECONDS_MAX);
    vec_free(&out);
    fx_close(&f);
}

/* util_cycle on successor functions of known shape: i -> next[i]. */
static uint64_t uc_steps_to_loop(const uint64_t *next, size_t n, uint64_t start, uint64_t budget) {
    util_cycle c;
    util_cycle_init(&c, start);
    uint64_t p = start;
    for (uint64_t steps = 1; steps <= budget; steps++) {
        if (p >= n) {
            return 0; /* the walk ended: no loop */
        }
        p = next[p];
        if (util_cycle_step(&c, p)) {
            return steps;
        }
    }
    return budget + 1;
}

TEST(util_cycle_finds_a_loop_within_a_few_times_its_length_and_never_on_a_chain) {
    enum { N = 1000 };
    uint64_t next[N];
    for (uint64_t tail = 0; tail < 50; tail += 7) {
        for (uint64_t len = 1; len < 200; len += 13) {
            /* A tail of `tail` nodes, then a loop of `len`. */
            for (uint64_t i = 0; i < tail + len; i++) {
                next[i] = i + 1 < tail + len ? i + 1 : tail;
            }
            uint64_t steps = uc_steps_to_loop(next, N, 0, 100000);
            CHECK(steps > 0);
            CHECK(steps <= 2 * (tail + len) + len);
        }
    }
    /* A chain that ends is never called a loop. */
    for (uint64_t i = 0; i < N; i++) {
        next[i] = i + 1;
    }
    CHECK_EQ(uc_steps_to_loop(next, N, 0, 100000), 0);
}

/* The radix sort against a plain insertion sort's answer: keys that differ
 * in few bits and in many, duplicates, and the byte carried beside each. */
TEST(util_sort_u64_sorts_keys_and_carries_their_bytes) {
    enum { N = 3000 };
    static uint64_t keys[N], want[N];
    static uint8_t extra[N];
    uint64_t x = 88172645463325252ull;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < N; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* round 0: full 64-bit keys; 1: a heap's addresses, 16-byte
             * aligned within 1 MiB; 2: a handful of values, many equal. */
            keys[i] = round == 0 ? x : round == 1 ? 0x7f0000000000ull + (x & 0xffff0) : x % 5;
            extra[i] = (uint8_t)(keys[i] * 31 + 7);
            want[i] = keys[i];
        }
        for (size_t i = 1; i < N; i++) {
            for (size_t j = i; j > 0 && want[j - 1] > want[j]; j--) {
                uint64_t tmp = want[j];
                want[j] = want[j - 1];
                want[j - 1] = tmp;
            }
        }
        if (!CHECK(util_sort_u64(keys, extra, N))) {
            return;
        }
        for (size_t i = 0; i < N; i++) {
            CHECK_EQ(keys[i], want[i]);
            CHECK_EQ(extra[i], (uint8_t)(keys[i] * 31 + 7));
        }
    }
    /* Nothing to sort, and one key. */
    CHECK(util_sort_u64(keys, NULL, 0));
    CHECK(util_sort_u64(keys, NULL, 1));
}

/* A settled vector keeps its elements in the arena, exactly as many as it
 * held; growing it again copies them out (the arena's copy untouched), and
 * freeing either kind frees only what the vector owns (ASan checks that). */
TEST(vec_settle_moves_elements_into_the_arena_and_out_again_on_growth) {
    util_arena a;
    memset(&a, 0, sizeof a);
    enum { VECS = 5000 };
    static vec vs[VECS];
    for (size_t i = 0; i < VECS; i++) {
        vec_init(&vs[i], sizeof(uint64_t));
        for (size_t k = 0; k < i % 7; k++) {
            u64vec_push(&vs[i], i * 100 + k);
        }
        CHECK(vec_settle(&vs[i], &a));
        CHECK_EQ(vs[i].len, i % 7);
        CHECK_EQ(vs[i].cap, i % 7);
        CHECK(vs[i].len == 0 ? !vs[i].data && !vs[i].in_arena : vs[i].in_arena);
        CHECK(!vs[i].data || ((uintptr_t)vs[i].data & 7) == 0);
    }
    CHECK(a.blocks.len > 1);
    int bad = 0;
    for (size_t i = 0; i < VECS; i++) {
        for (size_t k = 0; k < vs[i].len; k++) {
            bad += *VEC_AT(&vs[i], uint64_t, k) != i * 100 + k;
        }
    }
    CHECK_EQ(bad, 0);
    const uint64_t *kept = vs[6].data;
    CHECK(u64vec_push(&vs[6], 42));
    CHECK(!vs[6].in_arena && vs[6].data != kept);
    CHECK_EQ(vs[6].len, 7);
    CHECK_EQ(*VEC_AT(&vs[6], uint64_t, 5), 605);
    CHECK_EQ(*VEC_AT(&vs[6], uint64_t, 6), 42);
    CHECK_EQ(kept[5], 605);
    for (size_t i = 0; i < VECS; i++) {
        vec_free(&vs[i]);
    }
    util_arena_free(&a);
}

/* dict readers and instance attributes on hand-built objects: combined
 * unicode and general tables, split tables with their values arrays, damaged
 * keys headers, and managed dicts in the 3.11, 3.12 and 3.14 layouts. */
#include <string.h>

#include "fixture.h"
#include "unit.h"

/* Type flag of dict subclasses (Include/object.h). */
#define DICT_SUBCLASS (1ull << 29)
/* Words before a managed-dict instance: values (3.11) and dict at -32, -24,
 * then the GC header. */
#define PREHEADER 32

static uint64_t val(size_t i) {
    return 0x7f0000001000ull + i * 16;
}

/* key, value pairs as py_dict_items returns them. */
static bool holds_pairs(const vec *v, const uint64_t *want, size_t npairs) {
    if (v->len != npairs * 2) {
        return false;
    }
    return memcmp(v->data, want, npairs * 2 * sizeof(uint64_t)) == 0;
}

TEST(dict_unicode_combined_items_skip_deleted_entries) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        uint64_t ka = fx_str(&f, "alpha"), kb = fx_str(&f, "beta");
        const uint64_t keys[] = {ka, 0, kb};
        const uint64_t values[] = {val(0), 0, val(2)};
        uint64_t d = fx_dict(&f, fx_keys(&f, 1, keys, values, 3), 0);
        vec out;
        vec_init(&out, sizeof(uint64_t));
        CHECK_ERR(py_dict_items(&f.t, d, &out), ERR_OK);
        const uint64_t want[] = {ka, val(0), kb, val(2)};
        CHECK(holds_pairs(&out, want, 2));
        uint64_t got = 1;
        CHECK_ERR(py_dict_get_str(&f.t, d, "beta", &got), ERR_OK);
        CHECK_EQ(got, val(2));
        CHECK_ERR(py_dict_get_str(&f.t, d, "gamma", &got), ERR_OK);
        CHECK_EQ(got, 0);
        vec_free(&out);
        fx_close(&f);
    }
}

TEST(dict_general_kind0_entries_are_24_bytes_with_hash_first) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        uint64_t k1 = fx_long(&f, 42), k2 = fx_str(&f, "name"), k3 = fx_long(&f, -1);
        const uint64_t keys[] = {k1, k2, k3};
        const uint64_t values[] = {val(0), val(1), val(2)};
        uint64_t d = fx_dict(&f, fx_keys(&f, 0, keys, values, 3), 0);
        vec out;
        vec_init(&out, sizeof(uint64_t));
        CHECK_ERR(py_dict_items(&f.t, d, &out), ERR_OK);
        const uint64_t want[] = {k1, val(0), k2, val(1), k3, val(2)};
        CHECK(holds_pairs(&out, want, 3));
        uint64_t got = 0;
        CHECK_ERR(py_dict_get_str(&f.t, d, "name", &got), ERR_OK); /* int keys are skipped */
        CHECK_EQ(got, val(1));
        vec_free(&out);
        fx_close(&f);
    }
}

TEST(dict_split_values_come_from_the_values_array) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        uint64_t kx = fx_str(&f, "x"), ky = fx_str(&f, "y"), kz = fx_str(&f, "z");
        const uint64_t keys[] = {kx, ky, kz};
        const uint64_t values[] = {val(0), 0, val(2)}; /* y has no value here */
        uint64_t d = fx_dict(&f, fx_keys(&f, 2, keys, NULL, 3), fx_values(&f, values, 3));
        vec out;
        vec_init(&out, sizeof(uint64_t));
        CHECK_ERR(py_dict_items(&f.t, d, &out), ERR_OK);
        const uint64_t want[] = {kx, val(0), kz, val(2)};
        CHECK(holds_pairs(&out, want, 2));
        uint64_t got = 1;
        CHECK_ERR(py_dict_get_str(&f.t, d, "y", &got), ERR_OK);
        CHECK_EQ(got, 0);
        CHECK_ERR(py_dict_get_str(&f.t, d, "z", &got), ERR_OK);
        CHECK_EQ(got, val(2));
        vec_free(&out);
        fx_close(&f);
    }
}

TEST(dict_split_values_start_at_0_in_312_and_at_8_in_314) {
    /* One values buffer: a word that is a header in 3.13+, then two values. */
    const uint64_t raw[] = {val(9), val(0), val(1)};
    const int minors[] = {12, 14};
    const size_t first[] = {9, 0};
    for (size_t v = 0; v < ARRAY_LEN(minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, minors[v]))) {
            return;
        }
        uint64_t ka = fx_str(&f, "a"), kb = fx_str(&f, "b");
        const uint64_t keys[] = {ka, kb};
        uint64_t d = fx_dict(&f, fx_keys(&f, 2, keys, NULL, 2), fx_put(&f, raw, sizeof raw));
        uint64_t got = 0;
        CHECK_ERR(py_dict_get_str(&f.t, d, "a", &got), ERR_OK);
        CHECK_EQ(got, val(first[v]));
        fx_close(&f);
    }
}

TEST(dict_with_damaged_keys_header_is_corrupt) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    uint64_t ka = fx_str(&f, "a");
    const uint64_t keys[] = {ka};
    const uint64_t values[] = {val(0)};
    uint64_t good = fx_keys(&f, 1, keys, values, 1);
    uint8_t hdr[48];
    CHECK_ERR(mem_read(f.t.m, good, sizeof hdr, hdr), ERR_OK);
    struct {
        size_t off;
        uint64_t value;
        unsigned width;
    } damage[] = {
        {8, 40, 1},            /* dk_log2_size: a 2^40-slot table */
        {8, 27, 1},            /* just above the largest we walk */
        {9, 200, 1},           /* dk_log2_index_bytes */
        {10, 3, 1},            /* dk_kind */
        {24, 9, 8},            /* dk_nentries above the 8 slots */
        {24, (uint64_t)-1, 8}, /* negative dk_nentries */
    };
    vec out;
    vec_init(&out, sizeof(uint64_t));
    for (size_t i = 0; i < ARRAY_LEN(damage); i++) {
        unit_ctx("byte %zu = %llu", damage[i].off, (unsigned long long)damage[i].value);
        uint8_t b[48];
        memcpy(b, hdr, sizeof b);
        if (damage[i].width == 1) {
            b[damage[i].off] = (uint8_t)damage[i].value;
        } else {
            fx_w64(b, damage[i].off, damage[i].value);
        }
        uint64_t d = fx_dict(&f, fx_put(&f, b, sizeof b), 0);
        CHECK_ERR(py_dict_items(&f.t, d, &out), ERR_CORRUPT);
    }
    CHECK_EQ(out.len, 0);
    CHECK_ERR(py_dict_items(&f.t, fx_dict(&f, 0, 0), &out), ERR_READ);
    CHECK_ERR(py_dict_items(&f.t, fx_dict(&f, good, 0), &out), ERR_OK);
    CHECK_EQ(out.len, 2);
    vec_free(&out);
    fx_close(&f);
}

TEST(dict_of_another_type_is_corrupt_but_subclass_is_read) {
    fx f;
    if (!CHECK(fx_open(&f, 14))) {
        return;
    }
    uint64_t ka = fx_str(&f, "a");
    const uint64_t keys[] = {ka};
    const uint64_t values[] = {val(0)};
    uint64_t d = fx_dict(&f, fx_keys(&f, 1, keys, values, 1), 0);
    uint8_t b[48];
    CHECK_ERR(mem_read(f.t.m, d, sizeof b, b), ERR_OK);
    fx_w64(b, 8, f.t.types.list);
    uint64_t notdict = fx_put(&f, b, sizeof b);
    fx_w64(b, 8, fx_type(&f, DICT_SUBCLASS, 0));
    uint64_t sub = fx_put(&f, b, sizeof b);
    vec out;
    vec_init(&out, sizeof(uint64_t));
    CHECK_ERR(py_dict_items(&f.t, notdict, &out), ERR_CORRUPT);
    CHECK_ERR(py_dict_items(&f.t, sub, &out), ERR_OK);
    CHECK_EQ(out.len, 2);
    vec_free(&out);
    fx_close(&f);
}

TEST(dict_get_str_matches_whole_keys_only) {
    fx f;
    if (!CHECK(fx_open(&f, 11))) {
        return;
    }
    const uint32_t wide[] = {'a', 0xE9};
    uint64_t keys[] = {fx_str(&f, "ab"), fx_str(&f, "abc"), fx_str(&f, "a"),
                       fx_str_cp(&f, 1, false, wide, 2)};
    const uint64_t values[] = {val(0), val(1), val(2), val(3)};
    uint64_t d = fx_dict(&f, fx_keys(&f, 1, keys, values, 4), 0);
    const char *names[] = {"ab", "abc", "a", "a\xC3\xA9"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        uint64_t got = 0;
        CHECK_ERR(py_dict_get_str(&f.t, d, names[i], &got), ERR_OK);
        CHECK_EQ(got, val(i));
    }
    uint64_t got = 1;
    CHECK_ERR(py_dict_get_str(&f.t, d, "abcd", &got), ERR_OK);
    CHECK_EQ(got, 0);
    CHECK_ERR(py_dict_get_str(&f.t, d, "", &got), ERR_OK);
    CHECK_EQ(got, 0);
    fx_close(&f);
}

/* ---- instance attributes ---- */

/* A heap type with the given flags, basicsize, cached keys and dictoffset. */
static uint64_t heap_type(fx *f, uint64_t flags, uint64_t basicsize, uint64_t cached_keys,
                          int64_t dictoffset) {
    const py_layout *L = &f->t.L;
    uint8_t b[FX_TYPE_SIZE] = {0};
    fx_w64(b, (size_t)L->ob_type, f->t.types.type);
    fx_w64(b, (size_t)L->tp_flags, flags);
    fx_w64(b, (size_t)L->tp_basicsize, basicsize);
    fx_w64(b, (size_t)L->tp_dictoffset, (uint64_t)dictoffset);
    fx_w64(b, (size_t)L->ht_cached_keys, cached_keys);
    return fx_put(f, b, sizeof b);
}

/* An instance with the words at -32 and -24 set, and tail bytes placed at
 * offset at (e.g. inline values at tp_basicsize). */
static uint64_t instance(fx *f, uint64_t type, uint64_t m32, uint64_t m24, size_t at,
                         const void *tail, size_t tail_len) {
    uint8_t b[512] = {0};
    size_t len = PREHEADER + at + tail_len;
    if (!CHECK(len <= sizeof b && at >= 16)) {
        return 0;
    }
    fx_w64(b, 0, m32);
    fx_w64(b, 8, m24);
    fx_w64(b, PREHEADER + (size_t)f->t.L.ob_refcnt, 1);
    fx_w64(b, PREHEADER + (size_t)f->t.L.ob_type, type);
    if (tail_len) {
        memcpy(b + PREHEADER + at, tail, tail_len);
    }
    return fx_put(f, b, len) + PREHEADER;
}

/* Shared keys "_name", "count" as a class's cached keys (split kind). */
static uint64_t shared_keys(fx *f) {
    const uint64_t keys[] = {fx_str(f, "_name"), fx_str(f, "count")};
    return fx_keys(f, 2, keys, NULL, 2);
}

TEST(attr_311_reads_managed_values_at_minus_32) {
    fx f;
    if (!CHECK(fx_open(&f, 11))) {
        return;
    }
    uint64_t type =
        heap_type(&f, FX_TPFLAGS_MANAGED_DICT | FX_TPFLAGS_HEAPTYPE, 16, shared_keys(&f), -1);
    const uint64_t values[] = {val(0), val(1)};
    uint64_t obj = instance(&f, type, fx_values(&f, values, 2), 0, 16, NULL, 0);
    uint64_t got = 0;
    CHECK_ERR(py_attr(&f.t, obj, "count", &got), ERR_OK);
    CHECK_EQ(got, val(1));
    CHECK_ERR(py_attr(&f.t, obj, "missing", &got), ERR_OK);
    CHECK_EQ(got, 0);
    fx_close(&f);
}

TEST(attr_312_word_at_minus_24_is_tagged_values_or_a_dict) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    uint64_t type =
        heap_type(&f, FX_TPFLAGS_MANAGED_DICT | FX_TPFLAGS_HEAPTYPE, 16, shared_keys(&f), -1);
    const uint64_t values[] = {val(0), val(1)};
    uint64_t vals = fx_values(&f, values, 2);
    /* 3.12 stores values - 1: bit 0 set tells values from a dict. */
    uint64_t obj = instance(&f, type, 0, vals - 1, 16, NULL, 0);
    uint64_t got = 0;
    CHECK_ERR(py_attr(&f.t, obj, "_name", &got), ERR_OK);
    CHECK_EQ(got, val(0));
    CHECK_ERR(py_attr(&f.t, obj, "count", &got), ERR_OK);
    CHECK_EQ(got, val(1));
    /* Untagged, the word is the instance's materialized dict. */
    const uint64_t dkeys[] = {fx_str(&f, "count")};
    const uint64_t dvals[] = {val(5)};
    uint64_t d = fx_dict(&f, fx_keys(&f, 1, dkeys, dvals, 1), 0);
    uint64_t with_dict = instance(&f, type, 0, d, 16, NULL, 0);
    CHECK_ERR(py_attr(&f.t, with_dict, "count", &got), ERR_OK);
    CHECK_EQ(got, val(5));
    fx_close(&f);
}

TEST(attr_314_reads_inline_values_after_basicsize) {
    fx f;
    if (!CHECK(fx_open(&f, 14))) {
        return;
    }
    const uint64_t basicsize = 24;
    uint64_t flags = FX_TPFLAGS_MANAGED_DICT | FX_TPFLAGS_INLINE_VALUES | FX_TPFLAGS_HEAPTYPE;
    uint64_t type = heap_type(&f, flags, basicsize, shared_keys(&f), -1);
    /* capacity, size, embedded, valid, padding, then the values. */
    uint8_t inl[24] = {2, 2, 1, 1};
    fx_w64(inl, 8, val(0));
    fx_w64(inl, 16, val(1));
    uint64_t obj = instance(&f, type, 0, 0, basicsize, inl, sizeof inl);
    uint64_t got = 0;
    CHECK_ERR(py_attr(&f.t, obj, "count", &got), ERR_OK);
    CHECK_EQ(got, val(1));
    CHECK_ERR(py_attr(&f.t, obj, "_name", &got), ERR_OK);
    CHECK_EQ(got, val(0));
    /* Invalidated inline values (the dict took them over) are not read. */
    inl[3] = 0;
    uint64_t stale = instance(&f, type, 0, 0, basicsize, inl, sizeof inl);
    got = 1;
    CHECK_ERR(py_attr(&f.t, stale, "count", &got), ERR_OK);
    CHECK_EQ(got, 0);
    /* A materialized dict at -24 wins over the inline values. */
    const uint64_t dkeys[] = {fx_str(&f, "count")};
    const uint64_t dvals[] = {val(7)};
    uint64_t d = fx_dict(&f, fx_keys(&f, 1, dkeys, dvals, 1), 0);
    inl[3] = 1;
    uint64_t with_dict = instance(&f, type, 0, d, basicsize, inl, sizeof inl);
    CHECK_ERR(py_attr(&f.t, with_dict, "count", &got), ERR_OK);
    CHECK_EQ(got, val(7));
    fx_close(&f);
}

TEST(attr_managed_values_need_a_heap_type_with_cached_keys) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    const uint64_t values[] = {val(0), val(1)};
    uint64_t vals = fx_values(&f, values, 2);
    uint64_t static_type = heap_type(&f, FX_TPFLAGS_MANAGED_DICT, 16, shared_keys(&f), -1);
    uint64_t no_keys = heap_type(&f, FX_TPFLAGS_MANAGED_DICT | FX_TPFLAGS_HEAPTYPE, 16, 0, -1);
    uint64_t got = 1;
    CHECK_ERR(py_attr(&f.t, instance(&f, static_type, 0, vals - 1, 16, NULL, 0), "count", &got),
              ERR_CORRUPT);
    CHECK_ERR(py_attr(&f.t, instance(&f, no_keys, 0, vals - 1, 16, NULL, 0), "count", &got),
              ERR_CORRUPT);
    CHECK_EQ(got, 0);
    fx_close(&f);
}

TEST(attr_of_unmanaged_type_uses_tp_dictoffset) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        const uint64_t keys[] = {fx_str(&f, "x")};
        const uint64_t values[] = {val(3)};
        uint64_t d = fx_dict(&f, fx_keys(&f, 1, keys, values, 1), 0);
        uint64_t type = heap_type(&f, FX_TPFLAGS_HEAPTYPE, 32, 0, 24);
        uint8_t tail[8];
        fx_w64(tail, 0, d);
        uint64_t obj = instance(&f, type, 0, 0, 24, tail, sizeof tail);
        uint64_t got = 0;
        CHECK_ERR(py_attr(&f.t, obj, "x", &got), ERR_OK);
        CHECK_EQ(got, val(3));
        /* No dict at all: absent, not an error. */
        uint64_t bare =
            instance(&f, heap_type(&f, FX_TPFLAGS_HEAPTYPE, 16, 0, 0), 0, 0, 16, NULL, 0);
        got = 1;
        CHECK_ERR(py_attr(&f.t, bare, "x", &got), ERR_OK);
        CHECK_EQ(got, 0);
        CHECK_ERR(py_attr(&f.t, obj + 3, "x", &got), ERR_READ);
        fx_close(&f);
    }
}

/* str and int readers on hand-built objects for 3.11 (larger str headers,
 * ob_size-signed ints), 3.12 and 3.14 (lv_tag ints): every str kind, cuts,
 * surrogates, damaged headers, and int sizes up to the digit limit. */
#include <stdio.h>
#include <string.h>

#include "fixture.h"
#include "unit.h"

/* Reads obj as text into out (a fixed buffer) with the given limit. */
static err_t read_str(fx *f, uint64_t obj, size_t max_chars, char *out, size_t cap, bool *cut) {
    sbuf b;
    sbuf_init(&b);
    err_t e = py_read_str(&f->t, obj, &b, max_chars, cut);
    snprintf(out, cap, "%s", sbuf_str(&b));
    sbuf_free(&b);
    return e;
}

TEST(str_compact_ascii_reads_in_every_layout) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        uint64_t s = fx_str(&f, "hello world");
        uint64_t empty = fx_str(&f, "");
        char out[64];
        bool cut = true;
        CHECK_ERR(read_str(&f, s, PY_STR_MAX, out, sizeof out, &cut), ERR_OK);
        CHECK_STR(out, "hello world");
        CHECK(!cut);
        CHECK_ERR(read_str(&f, empty, PY_STR_MAX, out, sizeof out, &cut), ERR_OK);
        CHECK_STR(out, "");
        fx_close(&f);
    }
}

TEST(str_311_header_is_8_bytes_larger_than_312) {
    py_layout l11, l12;
    CHECK(py_layout_builtin(11, &l11) && py_layout_builtin(12, &l12));
    CHECK_EQ(l11.str_ascii_data - l12.str_ascii_data, 8);
    /* A 3.12-shaped ASCII string read with the 3.11 layout gives other text. */
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    uint64_t s = fx_str(&f, "abcdefghij");
    f.t.L = l11;
    char out[64];
    err_t e = read_str(&f, s, PY_STR_MAX, out, sizeof out, NULL);
    CHECK(e != ERR_OK || strcmp(out, "abcdefghij") != 0);
    fx_close(&f);
}

TEST(str_each_kind_is_utf8_encoded) {
    const uint32_t latin1[] = {'c', 'a', 'f', 0xE9, 0xFF};
    const uint32_t ucs2[] = {0x416, 'x', 0x2192, 0x7FF, 0x800};
    const uint32_t ucs4[] = {0x1F600, 'a', 0x10FFFF};
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        uint64_t s1 = fx_str_cp(&f, 1, false, latin1, ARRAY_LEN(latin1));
        uint64_t s2 = fx_str_cp(&f, 2, false, ucs2, ARRAY_LEN(ucs2));
        uint64_t s4 = fx_str_cp(&f, 4, false, ucs4, ARRAY_LEN(ucs4));
        char out[64];
        CHECK_ERR(read_str(&f, s1, PY_STR_MAX, out, sizeof out, NULL), ERR_OK);
        CHECK_STR(out, "caf\xC3\xA9\xC3\xBF");
        CHECK_ERR(read_str(&f, s2, PY_STR_MAX, out, sizeof out, NULL), ERR_OK);
        CHECK_STR(out, "\xD0\x96x\xE2\x86\x92\xDF\xBF\xE0\xA0\x80");
        CHECK_ERR(read_str(&f, s4, PY_STR_MAX, out, sizeof out, NULL), ERR_OK);
        CHECK_STR(out, "\xF0\x9F\x98\x80"
                       "a\xF4\x8F\xBF\xBF");
        fx_close(&f);
    }
}

TEST(str_longer_than_max_chars_is_cut_and_marked) {
    fx f;
    if (!CHECK(fx_open(&f, 14))) {
        return;
    }
    const uint32_t cps[] = {0x3B1, 0x3B2, 0x3B3, 0x3B4};
    uint64_t wide = fx_str_cp(&f, 2, false, cps, ARRAY_LEN(cps));
    uint64_t s = fx_str(&f, "abcdefgh");
    char out[64];
    bool cut = false;
    CHECK_ERR(read_str(&f, s, 3, out, sizeof out, &cut), ERR_OK);
    CHECK_STR(out, "abc");
    CHECK(cut);
    CHECK_ERR(read_str(&f, s, 7, out, sizeof out, &cut), ERR_OK);
    CHECK_STR(out, "abcdefg");
    CHECK(cut);
    CHECK_ERR(read_str(&f, s, 8, out, sizeof out, &cut), ERR_OK);
    CHECK_STR(out, "abcdefgh");
    CHECK(!cut);
    CHECK_ERR(read_str(&f, wide, 2, out, sizeof out, &cut), ERR_OK);
    CHECK_STR(out, "\xCE\xB1\xCE\xB2");
    CHECK(cut);
    fx_close(&f);
}

TEST(str_long_text_reads_across_internal_chunks) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    /* 700 UCS-4 code points: 2800 bytes, more than one read chunk. */
    enum { N = 700 };
    uint32_t cps[N];
    for (size_t i = 0; i < N; i++) {
        cps[i] = i % 2 ? 0x1F600 : (uint32_t)('a' + i % 26);
    }
    uint64_t s = fx_str_cp(&f, 4, false, cps, N);
    sbuf b;
    sbuf_init(&b);
    CHECK_ERR(py_read_str(&f.t, s, &b, PY_STR_MAX, NULL), ERR_OK);
    CHECK_EQ(b.len, N / 2 * (1 + 4));
    CHECK(b.len > 4 && memcmp(b.data + b.len - 4, "\xF0\x9F\x98\x80", 4) == 0);
    sbuf_free(&b);
    fx_close(&f);
}

TEST(str_lone_surrogate_is_escaped_and_a_surrogateescape_byte_is_its_byte) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    /* U+DCFF is how os.fsdecode keeps the byte 0xFF of a file name. */
    const uint32_t cps[] = {'a', 0xD800, 'b', 0xDFFF, 0xDCFF};
    uint64_t s = fx_str_cp(&f, 2, false, cps, ARRAY_LEN(cps));
    const uint32_t big[] = {0x110000};
    uint64_t s4 = fx_str_cp(&f, 4, false, big, 1);
    char out[64];
    CHECK_ERR(read_str(&f, s, PY_STR_MAX, out, sizeof out, NULL), ERR_OK);
    CHECK_STR(out, "a\\ud800b\\udfff\\xff");
    CHECK_ERR(read_str(&f, s4, PY_STR_MAX, out, sizeof out, NULL), ERR_OK);
    CHECK_STR(out, "\\U00110000");
    fx_close(&f);
}

TEST(str_control_characters_are_escaped_where_they_are_read) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        /* A task named "\x1b[2J" plus a newline, a C1 CSI and a bidi override. */
        const uint32_t cps[] = {0x1B, '[', '2', 'J', '\n', 0x9B, 0x202E, 0xE9, '\\'};
        uint64_t s = fx_str_cp(&f, 2, false, cps, ARRAY_LEN(cps));
        uint64_t ascii = fx_str(&f, "a\tb\x7f'");
        char out[64];
        CHECK_ERR(read_str(&f, s, PY_STR_MAX, out, sizeof out, NULL), ERR_OK);
        CHECK_STR(out, "\\x1b[2J\\x0a\\x9b\\u202e\xC3\xA9\\");
        CHECK_ERR(read_str(&f, ascii, PY_STR_MAX, out, sizeof out, NULL), ERR_OK);
        CHECK_STR(out, "a\\x09b\\x7f'");
        /* A repr body escapes the backslash and the quote as well. */
        sbuf b;
        sbuf_init(&b);
        CHECK_ERR(py_read_str_repr(&f.t, s, &b, PY_STR_MAX, NULL), ERR_OK);
        CHECK_STR(sbuf_str(&b), "\\x1b[2J\\x0a\\x9b\\u202e\xC3\xA9\\\\");
        sbuf_reset(&b);
        CHECK_ERR(py_read_str_repr(&f.t, ascii, &b, PY_STR_MAX, NULL), ERR_OK);
        CHECK_STR(sbuf_str(&b), "a\\x09b\\x7f\\'");
        sbuf_free(&b);
        /* A buffer too small for the whole escape drops it whole. */
        CHECK_ERR(py_read_str_buf(&f.t, s, out, 3), ERR_OK);
        CHECK_STR(out, "");
        CHECK_ERR(py_read_str_buf(&f.t, s, out, 8), ERR_OK);
        CHECK_STR(out, "\\x1b[2J");
        CHECK_ERR(py_read_str_buf(&f.t, s, out, 10), ERR_OK);
        CHECK_STR(out, "\\x1b[2J");
        fx_close(&f);
    }
}

TEST(type_name_with_control_bytes_and_bad_utf8_is_escaped) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    const char name[] = "Evil\x1b]0;pwned\x07\xff\xc3";
    uint64_t at = fx_put(&f, name, sizeof name);
    static uint8_t tb[FX_TYPE_SIZE];
    fx_w64(tb, (size_t)f.t.L.ob_refcnt, 1);
    fx_w64(tb, (size_t)f.t.L.tp_name, at);
    uint64_t type = fx_put(&f, tb, sizeof tb);
    char out[64];
    CHECK_ERR(py_type_name(&f.t, type, out, sizeof out), ERR_OK);
    CHECK_STR(out, "Evil\\x1b]0;pwned\\x07\\xff\\xc3");
    CHECK_ERR(py_type_name(&f.t, type, out, 8), ERR_OK);
    CHECK_STR(out, "Evil"); /* never half an escape */
    fx_close(&f);
}

TEST(str_with_wrong_type_is_corrupt_but_subclass_is_read) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        const py_layout *L = &f.t.L;
        uint64_t s = fx_str(&f, "name");
        uint8_t b[64];
        CHECK_ERR(mem_read(f.t.m, s, (size_t)L->str_ascii_data + 5, b), ERR_OK);
        fx_w64(b, (size_t)L->ob_type, f.t.types.bytes);
        uint64_t wrong = fx_put(&f, b, (size_t)L->str_ascii_data + 5);
        fx_w64(b, (size_t)L->ob_type, fx_type(&f, FX_TPFLAGS_UNICODE_SUBCLASS, 0));
        uint64_t sub = fx_put(&f, b, (size_t)L->str_ascii_data + 5);
        char out[64];
        CHECK_ERR(read_str(&f, wrong, PY_STR_MAX, out, sizeof out, NULL), ERR_CORRUPT);
        CHECK_ERR(read_str(&f, sub, PY_STR_MAX, out, sizeof out, NULL), ERR_OK);
        CHECK_STR(out, "name");
        CHECK_ERR(read_str(&f, s + 4, PY_STR_MAX, out, sizeof out, NULL), ERR_CORRUPT);
        CHECK_ERR(read_str(&f, 0, PY_STR_MAX, out, sizeof out, NULL), ERR_CORRUPT);
        fx_close(&f);
    }
}

TEST(str_negative_length_or_bad_kind_is_corrupt) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        const py_layout *L = &f.t.L;
        size_t len = (size_t)L->str_ascii_data + 4;
        uint64_t s = fx_str(&f, "abc");
        uint8_t b[64];
        CHECK_ERR(mem_read(f.t.m, s, len, b), ERR_OK);
        fx_w64(b, (size_t)L->str_length, (uint64_t)-3);
        uint64_t neg = fx_put(&f, b, len);
        fx_w64(b, (size_t)L->str_length, 3);
        fx_w32(b, (size_t)L->str_state, (rd_u32(b, (size_t)L->str_state) & ~(7u << 2)) | 3u << 2);
        uint64_t kind3 = fx_put(&f, b, len);
        char out[64];
        CHECK_ERR(read_str(&f, neg, PY_STR_MAX, out, sizeof out, NULL), ERR_CORRUPT);
        CHECK_ERR(read_str(&f, kind3, PY_STR_MAX, out, sizeof out, NULL), ERR_CORRUPT);
        fx_close(&f);
    }
}

TEST(str_with_unmapped_data_is_read_error) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        const py_layout *L = &f.t.L;
        uint64_t s = fx_str(&f, "0123456789");
        uint8_t b[64];
        CHECK_ERR(mem_read(f.t.m, s, (size_t)L->str_ascii_data + 11, b), ERR_OK);
        fx_w64(b, (size_t)L->str_length, 200); /* claims more than is mapped */
        uint64_t longer = fx_put(&f, b, (size_t)L->str_ascii_data + 11);
        /* Only the header: the first read of the text fails. */
        uint64_t bare = fx_put(&f, b, (size_t)L->str_ascii_data);
        char out[256];
        CHECK_ERR(read_str(&f, longer, PY_STR_MAX, out, sizeof out, NULL), ERR_READ);
        CHECK_ERR(read_str(&f, bare, PY_STR_MAX, out, sizeof out, NULL), ERR_READ);
        /* Within the limit, the mapped prefix alone is enough. */
        CHECK_ERR(read_str(&f, longer, 10, out, sizeof out, NULL), ERR_OK);
        CHECK_STR(out, "0123456789");
        CHECK_ERR(read_str(&f, 0x7000, PY_STR_MAX, out, sizeof out, NULL), ERR_READ);
        fx_close(&f);
    }
}

TEST(str_legacy_non_compact_reads_through_data_pointer) {
    fx f;
    if (!CHECK(fx_open(&f, 11))) {
        return;
    }
    const py_layout *L = &f.t.L;
    const uint16_t text[] = {'o', 'l', 0xE1, 0};
    uint64_t data = fx_put(&f, text, sizeof text);
    uint8_t b[96] = {0};
    size_t len = (size_t)L->str_legacy_data + 8;
    fx_w64(b, (size_t)L->ob_type, f.t.types.str);
    fx_w64(b, (size_t)L->str_length, 3);
    fx_w32(b, (size_t)L->str_state, 2u << 2 | 1u << 7); /* kind 2, not compact, ready */
    fx_w64(b, (size_t)L->str_legacy_data, data);
    uint64_t s = fx_put(&f, b, len);
    fx_w64(b, (size_t)L->str_legacy_data, 0);
    uint64_t no_data = fx_put(&f, b, len);
    char out[64];
    CHECK_ERR(read_str(&f, s, PY_STR_MAX, out, sizeof out, NULL), ERR_OK);
    CHECK_STR(out, "ol\xC3\xA1");
    CHECK(read_str(&f, no_data, PY_STR_MAX, out, sizeof out, NULL) != ERR_OK);
    fx_close(&f);
}

TEST(str_buf_cuts_on_a_utf8_boundary_and_respects_capacity) {
    fx f;
    if (!CHECK(fx_open(&f, 14))) {
        return;
    }
    const uint32_t cps[] = {'a', 0xE9, 'b'};
    uint64_t s = fx_str_cp(&f, 1, false, cps, ARRAY_LEN(cps));
    char buf[8];
    CHECK_ERR(py_read_str_buf(&f.t, s, buf, 3), ERR_OK); /* "a\xC3" would split the é */
    CHECK_STR(buf, "a");
    CHECK_ERR(py_read_str_buf(&f.t, s, buf, 4), ERR_OK);
    CHECK_STR(buf, "a\xC3\xA9");
    CHECK_ERR(py_read_str_buf(&f.t, s, buf, sizeof buf), ERR_OK);
    CHECK_STR(buf, "a\xC3\xA9"
                   "b");
    CHECK_ERR(py_read_str_buf(&f.t, s + 8, buf, sizeof buf), ERR_CORRUPT);
    CHECK_STR(buf, "");
    char guard[2] = {'G', 'H'};
    CHECK_ERR(py_read_str_buf(&f.t, s, guard, 0), ERR_OK); /* no room even for the NUL */
    CHECK_EQ(guard[0], 'G');
    CHECK_EQ(guard[1], 'H');
    fx_close(&f);
}

/* ---- int ---- */

TEST(long_small_values_in_every_encoding) {
    const int64_t values[] = {0, 1, -5, 1073741823, -1073741824};
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        for (size_t i = 0; i < ARRAY_LEN(values); i++) {
            int64_t got = 12345;
            CHECK_ERR(py_read_long(&f.t, fx_long(&f, values[i]), &got), ERR_OK);
            CHECK_EQ(got, values[i]);
        }
        /* Zero with its digit present (3.12+ small ints keep one). */
        const uint32_t zero[] = {0};
        int64_t got = 99;
        CHECK_ERR(py_read_long(&f.t, fx_long_digits(&f, 0, zero, 1), &got), ERR_OK);
        CHECK_EQ(got, 0);
        fx_close(&f);
    }
}

TEST(long_two_digit_values_combine_30_bit_digits) {
    const int64_t values[] = {((int64_t)1 << 40) + 7, -(((int64_t)1 << 40) + 7),
                              ((int64_t)1 << 59) + 12345};
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        for (size_t i = 0; i < ARRAY_LEN(values); i++) {
            int64_t got = 0;
            CHECK_ERR(py_read_long(&f.t, fx_long(&f, values[i]), &got), ERR_OK);
            CHECK_EQ(got, values[i]);
        }
        /* 2^40 + 7 is digits {7, 1024}: pin the order of the digits. */
        const uint32_t d[] = {7, 1024};
        int64_t got = 0;
        CHECK_ERR(py_read_long(&f.t, fx_long_digits(&f, 1, d, 2), &got), ERR_OK);
        CHECK_EQ(got, ((int64_t)1 << 40) + 7);
        fx_close(&f);
    }
}

TEST(long_beyond_three_digits_or_63_bits_is_limit) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        const uint32_t four[] = {1, 2, 3, 4};
        const uint32_t full3[] = {0x3FFFFFFF, 0x3FFFFFFF, 0x3FFFFFFF};
        const uint32_t top3[] = {0, 0, 8};                   /* exactly 2^63 */
        const uint32_t max3[] = {0x3FFFFFFF, 0x3FFFFFFF, 7}; /* 2^63 - 1 */
        int64_t got;
        CHECK_ERR(py_read_long(&f.t, fx_long_digits(&f, 1, four, 4), &got), ERR_LIMIT);
        CHECK_ERR(py_read_long(&f.t, fx_long_digits(&f, -1, four, 4), &got), ERR_LIMIT);
        CHECK_ERR(py_read_long(&f.t, fx_long_digits(&f, 1, full3, 3), &got), ERR_LIMIT);
        CHECK_ERR(py_read_long(&f.t, fx_long_digits(&f, 1, top3, 3), &got), ERR_LIMIT);
        CHECK_ERR(py_read_long(&f.t, fx_long_digits(&f, 1, max3, 3), &got), ERR_OK);
        CHECK_EQ(got, INT64_MAX);
        fx_close(&f);
    }
}

TEST(long_311_sign_is_in_ob_size_312_in_lv_tag) {
    fx f11, f12;
    if (!CHECK(fx_open(&f11, 11))) {
        return;
    }
    if (!CHECK(fx_open(&f12, 12))) {
        fx_close(&f11);
        return;
    }
    /* The same bytes: ob_size -1 (3.11) and lv_tag 1 << 3 | 2 (3.12). */
    uint8_t b[28] = {0};
    fx_w64(b, 16, (uint64_t)-1);
    fx_w32(b, 24, 5);
    fx_w64(b, 8, f11.t.types.long_);
    uint64_t a11 = fx_put(&f11, b, sizeof b);
    fx_w64(b, 16, 1 << 3 | 2);
    fx_w64(b, 8, f12.t.types.long_);
    uint64_t a12 = fx_put(&f12, b, sizeof b);
    int64_t got = 0;
    CHECK_ERR(py_read_long(&f11.t, a11, &got), ERR_OK);
    CHECK_EQ(got, -5);
    got = 0;
    CHECK_ERR(py_read_long(&f12.t, a12, &got), ERR_OK);
    CHECK_EQ(got, -5);
    /* Read with the other encoding, each is something else. */
    f11.t.L.long_lvtag = true;
    CHECK(py_read_long(&f11.t, a11, &got) != ERR_OK || got != -5);
    fx_close(&f11);
    fx_close(&f12);
}

TEST(long_311_most_negative_ob_size_is_limit) {
    fx f;
    if (!CHECK(fx_open(&f, 11))) {
        return;
    }
    uint8_t b[40] = {0};
    fx_w64(b, 8, f.t.types.long_);
    fx_w64(b, 16, (uint64_t)INT64_MIN);
    int64_t got = 77;
    CHECK_ERR(py_read_long(&f.t, fx_put(&f, b, sizeof b), &got), ERR_LIMIT);
    CHECK_EQ(got, 77);
    fx_close(&f);
}

TEST(long_accepts_bool_and_rejects_other_types) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        const py_layout *L = &f.t.L;
        uint64_t one = fx_long(&f, 1);
        uint8_t b[32];
        CHECK_ERR(mem_read(f.t.m, one, 28, b), ERR_OK);
        fx_w64(b, (size_t)L->ob_type, f.t.types.bool_);
        uint64_t yes = fx_put(&f, b, 28);
        fx_w64(b, (size_t)L->ob_type, f.t.types.str);
        uint64_t notint = fx_put(&f, b, 28);
        int64_t got = 0;
        CHECK_ERR(py_read_long(&f.t, yes, &got), ERR_OK);
        CHECK_EQ(got, 1);
        CHECK_ERR(py_read_long(&f.t, notint, &got), ERR_CORRUPT);
        CHECK_ERR(py_read_long(&f.t, 0, &got), ERR_READ);
        fx_close(&f);
    }
}

TEST(util_utf8_len_accepts_valid_sequences_and_rejects_the_rest) {
    CHECK_EQ(util_utf8_len((const unsigned char *)"a"), 1);
    CHECK_EQ(util_utf8_len((const unsigned char *)"\xC3\xA9"), 2);         /* é */
    CHECK_EQ(util_utf8_len((const unsigned char *)"\xE6\xA8\xA1"), 3);     /* 模 */
    CHECK_EQ(util_utf8_len((const unsigned char *)"\xF0\x9F\x98\x80"), 4); /* U+1F600 */
    CHECK_EQ(util_utf8_len((const unsigned char *)"\xFF"), 0);
    CHECK_EQ(util_utf8_len((const unsigned char *)"\x80"), 0);             /* stray continuation */
    CHECK_EQ(util_utf8_len((const unsigned char *)"\xC0\xAF"), 0);         /* overlong '/' */
    CHECK_EQ(util_utf8_len((const unsigned char *)"\xED\xA0\x80"), 0);     /* surrogate */
    CHECK_EQ(util_utf8_len((const unsigned char *)"\xF4\x90\x80\x80"), 0); /* past U+10FFFF */
    CHECK_EQ(util_utf8_len((const unsigned char *)"\xE6\xA8"), 0);         /* cut by the NUL */
}

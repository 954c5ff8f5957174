/* Code objects and frames: the 3.11+ location table in each entry form,
 * damaged tables, and frames read in the 3.11, 3.12 and 3.14 layouts (code
 * slot, stackref tags, owner byte, instruction pointer to line). */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "unit.h"

/* First byte of a location entry: bit 7, the form code, length - 1. */
#define LT(code, len) ((uint8_t)(0x80 | (code) << 3 | ((len)-1)))

/* A py_code over a heap copy of exactly len table bytes, so that a read
 * past its end is caught by ASan. */
static py_code make_code(int firstlineno, const uint8_t *table, size_t len) {
    py_code c;
    memset(&c, 0, sizeof c);
    c.firstlineno = firstlineno;
    c.linetable = malloc(len ? len : 1);
    if (c.linetable && len) {
        memcpy(c.linetable, table, len);
        c.linetable_len = len;
    }
    return c;
}

TEST(linetable_decodes_every_entry_form) {
    const uint8_t table[] = {
        LT(0, 2),  0x05,       /* short form: idx 0-1, line 10 */
        LT(9, 1),  0x12,       /* short form, last code: idx 2, line 10 */
        LT(11, 3), 0x04, 0x08, /* one-line, +1: idx 3-5, line 11 */
        LT(10, 1), 0x01, 0x02, /* one-line, +0: idx 6, line 11 */
        LT(12, 1), 0x00, 0x00, /* one-line, +2: idx 7, line 13 */
        LT(13, 2), 0x07,       /* no column, -3: idx 8-9, line 10 */
        LT(13, 1), 0x48, 0x03, /* no column, +100 (two-byte varint): idx 10, 110 */
        LT(14, 2), 0x65, 0x01, 0x02, 0x05, 0x09, /* long, -50: idx 11-12, line 60 */
        LT(15, 1),                               /* no location: idx 13 */
        LT(10, 8), 0x00, 0x00,                   /* one-line, +0: idx 14-21, line 60 */
    };
    py_code c = make_code(10, table, sizeof table);
    if (!CHECK(c.linetable != NULL)) {
        return;
    }
    /* Index and line; negative indices are before the first instruction. */
    const struct {
        int64_t idx;
        int line;
    } want[] = {
        {-1, 10}, {INT64_MIN, 10}, {0, 10},  {1, 10},  {2, 10},    {3, 11},  {5, 11},
        {6, 11},  {7, 13},         {8, 10},  {9, 10},  {10, 110},  {11, 60}, {12, 60},
        {13, -1}, {14, 60},        {21, 60}, {22, -1}, {1000, -1},
    };
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        unit_ctx("index %lld", (long long)want[i].idx);
        CHECK_EQ(py_code_line(&c, want[i].idx), want[i].line);
    }
    free(c.linetable);
}

TEST(linetable_truncated_or_garbage_gives_minus_one_without_overread) {
    /* Cut inside the long form's second varint. */
    const uint8_t cut_long[] = {LT(0, 1), 0x00, LT(14, 1), 0x02, 0x41};
    py_code c = make_code(7, cut_long, sizeof cut_long);
    CHECK_EQ(py_code_line(&c, 0), 7);
    CHECK_EQ(py_code_line(&c, 1), -1);
    free(c.linetable);
    /* Cut inside a no-column varint. */
    const uint8_t cut_nocol[] = {LT(13, 1), 0x40};
    c = make_code(7, cut_nocol, sizeof cut_nocol);
    CHECK_EQ(py_code_line(&c, 0), -1);
    free(c.linetable);
    /* A varint that never ends. */
    const uint8_t endless[] = {LT(13, 1), 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f};
    c = make_code(7, endless, sizeof endless);
    CHECK_EQ(py_code_line(&c, 0), -1);
    free(c.linetable);
    /* Not at an entry start (bit 7 clear). */
    const uint8_t garbage[] = {0x05, 0x80, 0x80};
    c = make_code(7, garbage, sizeof garbage);
    CHECK_EQ(py_code_line(&c, 0), -1);
    free(c.linetable);
    /* Column bytes missing after the last entry start. */
    const uint8_t cut_cols[] = {LT(0, 1), 0x00, LT(11, 1)};
    c = make_code(7, cut_cols, sizeof cut_cols);
    CHECK_EQ(py_code_line(&c, 0), 7);
    CHECK_EQ(py_code_line(&c, 5), -1);
    free(c.linetable);
    /* No table at all. */
    c = make_code(7, NULL, 0);
    CHECK_EQ(py_code_line(&c, 0), -1);
    CHECK_EQ(py_code_line(&c, -1), 7);
    free(c.linetable);
}

/* Line table shared by the frame tests, firstlineno 5: idx 0-1 line 6,
 * idx 2-4 line 8. */
static const uint8_t frame_table[] = {LT(13, 2), 0x02, LT(12, 3), 0x00, 0x00};
/* Code units the fake code objects hold. */
#define CODE_UNITS 8

static uint64_t put_code(fx *f, const char *qualname, const char *filename) {
    const py_layout *L = &f->t.L;
    uint8_t b[512] = {0};
    size_t len = (size_t)L->co_code_adaptive + CODE_UNITS * 2;
    if (!CHECK(len <= sizeof b)) {
        return 0;
    }
    fx_w64(b, (size_t)L->ob_type, f->t.types.code);
    fx_w32(b, (size_t)L->co_firstlineno, 5);
    fx_w32(b, (size_t)L->co_nlocalsplus, 0);
    fx_w64(b, (size_t)L->co_qualname, fx_str(f, qualname));
    fx_w64(b, (size_t)L->co_name, fx_str(f, qualname));
    fx_w64(b, (size_t)L->co_filename, fx_str(f, filename));
    fx_w64(b, (size_t)L->co_linetable, fx_bytes(f, frame_table, sizeof frame_table));
    return fx_put(f, b, len);
}

/* A frame with the code slot as stored (tags included), the instruction
 * pointer and the owner byte. */
static uint64_t put_frame(fx *f, uint64_t code_slot, uint64_t instr, int owner) {
    const py_layout *L = &f->t.L;
    uint8_t b[256] = {0};
    fx_w64(b, (size_t)L->fr_code, code_slot);
    fx_w64(b, (size_t)L->fr_previous, 0x7f0000002000ull);
    fx_w64(b, (size_t)L->fr_instr, instr);
    b[L->fr_owner] = (uint8_t)owner;
    return fx_put(f, b, L->fr_size);
}

/* Address of code unit i of a fake code object. */
static uint64_t unit_at(const fx *f, uint64_t code, int64_t i) {
    return code + (uint64_t)f->t.L.co_code_adaptive + (uint64_t)(i * 2);
}

TEST(frame_gives_qualname_filename_and_line_in_every_layout) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        uint64_t code = put_code(&f, "Worker.run", "/srv/app/worker.py");
        uint64_t tag = f.t.L.stackref_tagged ? 1 : 0; /* a deferred reference */
        uint64_t fr = put_frame(&f, code | tag, unit_at(&f, code, 3), 0);
        py_frame out;
        CHECK_ERR(py_frame_read(&f.t, fr, &out), ERR_OK);
        CHECK(out.is_python);
        CHECK_EQ(out.code, code);
        CHECK_EQ(out.raw_code, code);
        CHECK_EQ(out.previous, 0x7f0000002000ull);
        CHECK_STR(out.qualname, "Worker.run");
        CHECK_STR(out.filename, "/srv/app/worker.py");
        CHECK_EQ(out.line, 8);
        fr = put_frame(&f, code | tag, unit_at(&f, code, 1), 1); /* owned by a generator */
        CHECK_ERR(py_frame_read(&f.t, fr, &out), ERR_OK);
        CHECK(out.is_python);
        CHECK_EQ(out.line, 6);
        fx_close(&f);
    }
}

/* The lines a code object remembers (PY_CODE_LINE_MEMO) must stay the
 * table's own while more instructions than it holds come and go. */
TEST(frame_lines_stay_right_past_the_code_line_memo) {
    fx f;
    if (!CHECK(fx_open(&f, 14))) {
        return;
    }
    uint64_t code = put_code(&f, "Worker.run", "/srv/app/worker.py");
    const int want[CODE_UNITS] = {6, 6, 8, 8, 8, -1, -1, -1};
    const int64_t order[] = {0, 3, 1, 4, 5, 2, 0, 6, 3, 1, 7, 2, 5, 0, 4, 4, 6, 1};
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < ARRAY_LEN(order); i++) {
            py_frame out;
            uint64_t fr = put_frame(&f, code, unit_at(&f, code, order[i]), 0);
            CHECK_ERR(py_frame_read(&f.t, fr, &out), ERR_OK);
            CHECK_EQ(out.line, want[order[i]]);
        }
    }
    fx_close(&f);
}

TEST(frame_312_code_at_0_and_owner_at_70) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    uint64_t code = put_code(&f, "f", "a.py");
    uint8_t b[80] = {0};
    fx_w64(b, 0, code);
    fx_w64(b, 56, unit_at(&f, code, 0)); /* prev_instr */
    b[70] = 3;                           /* FRAME_OWNED_BY_CSTACK */
    uint64_t cstack = fx_put(&f, b, sizeof b);
    b[70] = 0;
    uint64_t thread = fx_put(&f, b, sizeof b);
    py_frame out;
    CHECK_ERR(py_frame_read(&f.t, thread, &out), ERR_OK);
    CHECK(out.is_python);
    CHECK_EQ(out.line, 6);
    CHECK_ERR(py_frame_read(&f.t, cstack, &out), ERR_OK);
    CHECK(!out.is_python);
    CHECK_EQ(out.owner, 3);
    fx_close(&f);
}

TEST(frame_314_strips_stackref_tag_and_reads_owner_at_74) {
    fx f;
    if (!CHECK(fx_open(&f, 14))) {
        return;
    }
    uint64_t code = put_code(&f, "main", "m.py");
    uint8_t b[88] = {0};
    fx_w64(b, 0, code | 1);
    fx_w64(b, 56, unit_at(&f, code, 4)); /* instr_ptr */
    b[70] = 4;                           /* where 3.12 kept the owner: ignored */
    uint64_t fr = fx_put(&f, b, sizeof b);
    b[74] = 3;
    uint64_t interp_owned = fx_put(&f, b, sizeof b);
    py_frame out;
    CHECK_ERR(py_frame_read(&f.t, fr, &out), ERR_OK);
    CHECK(out.is_python);
    CHECK_EQ(out.code, code);
    CHECK_STR(out.qualname, "main");
    CHECK_EQ(out.line, 8);
    CHECK_ERR(py_frame_read(&f.t, interp_owned, &out), ERR_OK);
    CHECK(!out.is_python);
    CHECK_EQ(out.owner, 3);
    fx_close(&f);
}

TEST(frame_owned_beyond_python_is_not_python) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        uint64_t code = put_code(&f, "shim", "<shim>");
        for (int owner = f.t.L.fr_owner_first_nonpy; owner < 6; owner++) {
            py_frame out;
            CHECK_ERR(py_frame_read(&f.t, put_frame(&f, code, unit_at(&f, code, 0), owner), &out),
                      ERR_OK);
            CHECK(!out.is_python);
            CHECK_EQ(out.code, 0);
            CHECK(out.qualname == NULL);
            CHECK_EQ(out.line, -1);
            CHECK_EQ(out.owner, owner);
        }
        fx_close(&f);
    }
}

TEST(frame_whose_code_slot_is_not_a_code_object_is_not_python) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        const uint64_t slots[] = {fx_str(&f, "not code"), 0, 0x7f00000000a0ull /* unmapped */,
                                  (42ull << 2) | 3 /* a tagged int in 3.14 */};
        for (size_t i = 0; i < ARRAY_LEN(slots); i++) {
            py_frame out;
            CHECK_ERR(py_frame_read(&f.t, put_frame(&f, slots[i], 0, 0), &out), ERR_OK);
            CHECK(!out.is_python);
            CHECK_EQ(out.code, 0);
        }
        fx_close(&f);
    }
}

TEST(frame_unreadable_or_misaligned_is_read_error) {
    fx f;
    if (!CHECK(fx_open(&f, 14))) {
        return;
    }
    uint64_t code = put_code(&f, "g", "g.py");
    uint64_t fr = put_frame(&f, code, unit_at(&f, code, 0), 0);
    py_frame out;
    CHECK_ERR(py_frame_read(&f.t, fr + 4, &out), ERR_READ);
    CHECK_ERR(py_frame_read(&f.t, 0x7f0000003000ull, &out), ERR_READ);
    CHECK(!out.is_python);
    CHECK_EQ(out.line, -1);
    /* Only part of the frame is mapped. */
    uint8_t b[88] = {0};
    fx_w64(b, 0, code);
    CHECK_ERR(py_frame_read(&f.t, fx_put(&f, b, 40), &out), ERR_READ);
    fx_close(&f);
}

TEST(frame_instruction_before_code_start_has_firstlineno_or_no_line) {
    /* 3.12's prev_instr starts one unit before the code: firstlineno. */
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    uint64_t code = put_code(&f, "h", "h.py");
    py_frame out;
    CHECK_ERR(py_frame_read(&f.t, put_frame(&f, code, unit_at(&f, code, -1), 0), &out), ERR_OK);
    CHECK_EQ(out.line, 5);
    fx_close(&f);
    /* 3.14's instr_ptr before the code is meaningless: no line. */
    if (!CHECK(fx_open(&f, 14))) {
        return;
    }
    code = put_code(&f, "h", "h.py");
    CHECK_ERR(py_frame_read(&f.t, put_frame(&f, code, unit_at(&f, code, -1), 0), &out), ERR_OK);
    CHECK(out.is_python);
    CHECK_EQ(out.line, -1);
    CHECK_ERR(py_frame_read(&f.t, put_frame(&f, code, 0, 0), &out), ERR_OK);
    CHECK_EQ(out.line, -1);
    fx_close(&f);
}

TEST(code_get_caches_code_and_rejects_other_objects) {
    fx f;
    if (!CHECK(fx_open(&f, 12))) {
        return;
    }
    uint64_t code = put_code(&f, "cached", "c.py");
    const py_code *a = NULL, *b = NULL;
    CHECK_ERR(py_code_get(&f.t, code, &a), ERR_OK);
    CHECK_ERR(py_code_get(&f.t, code, &b), ERR_OK);
    CHECK(a != NULL && a == b);
    if (a) {
        CHECK_STR(a->qualname, "cached");
        CHECK_EQ(a->firstlineno, 5);
        CHECK_EQ(a->linetable_len, sizeof frame_table);
    }
    /* A type object is as large as a code object but is not one. */
    CHECK_ERR(py_code_get(&f.t, f.t.types.str, &b), ERR_CORRUPT);
    CHECK_ERR(py_code_get(&f.t, 0x7f0000004000ull, &b), ERR_READ);
    fx_close(&f);
}

TEST(linetable_delta_past_int_max_gives_no_line) {
    /* firstlineno INT_MAX plus a no-column entry of +1: no signed overflow,
     * no line. */
    static const uint8_t table[] = {LT(13, 1), 0x02};
    py_code c = make_code(INT32_MAX, table, sizeof table);
    CHECK_EQ(py_code_line(&c, 0), -1);
    free(c.linetable);
}

TEST(frame_with_wild_instruction_pointer_has_no_line) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        fx f;
        if (!CHECK(fx_open(&f, fx_minors[v]))) {
            return;
        }
        uint64_t code = put_code(&f, "g", "g.py");
        py_frame out;
        uint64_t wild[] = {0x8000000000000000ull, UINT64_MAX, code - 4096, 1};
        for (size_t i = 0; i < ARRAY_LEN(wild); i++) {
            uint64_t fr = put_frame(&f, code, wild[i], 0);
            CHECK_ERR(py_frame_read(&f.t, fr, &out), ERR_OK);
            CHECK(out.is_python);
            CHECK_EQ(out.line, -1);
        }
        fx_close(&f);
    }
}

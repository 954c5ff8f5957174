/* util_escape, the one helper every byte from a target passes before it is
 * printed: the backslashreplace forms, what it keeps, what it never splits,
 * and that its output is valid UTF-8 without control characters and
 * escapes to itself. Also its two last lines: the error record and the
 * output writer. */
#include <stdio.h>
#include <string.h>

#include "../../src/base/err.h"
#include "../../src/base/util.h"
#include "../../src/out/out.h"
#include "unit.h"

static const char *esc(sbuf *b, const char *s, size_t n, unsigned flags) {
    sbuf_reset(b);
    util_escape(b, s, n, flags);
    return sbuf_str(b);
}

/* Valid UTF-8 with no C0/C1 control character (but \n and \t when keep). */
static bool clean_text(const char *s, size_t n, bool keep) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = util_utf8_decode(p + i, n - i, &cp);
        if (len == 0 || (cp < 0x20 && !(keep && (cp == '\n' || cp == '\t'))) ||
            (cp >= 0x7F && cp <= 0x9F)) {
            return false;
        }
        i += len;
    }
    return true;
}

TEST(escape_writes_control_characters_and_bad_bytes_as_backslash_x) {
    sbuf b;
    sbuf_init(&b);
    CHECK_STR(esc(&b, "plain name", 10, 0), "plain name");
    CHECK_STR(esc(&b, "\x1b[2J", 4, 0), "\\x1b[2J");
    CHECK_STR(esc(&b, "a\nb\tc\r", 6, 0), "a\\x0ab\\x09c\\x0d");
    CHECK_STR(esc(&b, "a\nb\tc\r", 6, UTIL_ESC_KEEP_LINES), "a\nb\tc\\x0d");
    CHECK_STR(esc(&b, "\x7f", 1, 0), "\\x7f");
    CHECK_STR(esc(&b, "nul\0in", 6, 0), "nul\\x00in");
    /* Not UTF-8: a lone byte, a cut sequence, an overlong '/', a surrogate. */
    CHECK_STR(esc(&b, "\xff", 1, 0), "\\xff");
    CHECK_STR(esc(&b, "x\xe6\xa8", 3, 0), "x\\xe6\\xa8");
    CHECK_STR(esc(&b, "\xc0\xaf", 2, 0), "\\xc0\\xaf");
    CHECK_STR(esc(&b, "\xed\xa0\x80", 3, 0), "\\xed\\xa0\\x80");
    /* C1 controls (U+009B is a CSI to some terminals), bidi overrides and
     * line separators are valid UTF-8 and escaped all the same. */
    CHECK_STR(esc(&b, "\xc2\x9b"
                      "31m",
                  5, 0),
              "\\x9b31m");
    CHECK_STR(esc(&b, "abc\xe2\x80\xae"
                      "def",
                  9, 0),
              "abc\\u202edef");
    CHECK_STR(esc(&b, "\xe2\x80\xa8", 3, 0), "\\u2028");
    /* Text passes: accents, CJK, emoji, the box drawing snarl prints. */
    CHECK_STR(esc(&b, "caf\xc3\xa9 \xe6\xa8\xa1 \xf0\x9f\x98\x80 \xe2\x94\x80", 18, 0),
              "caf\xc3\xa9 \xe6\xa8\xa1 \xf0\x9f\x98\x80 \xe2\x94\x80");
    /* A backslash stays (readable paths); a repr escapes it and the quote. */
    CHECK_STR(esc(&b, "a\\b'c", 5, 0), "a\\b'c");
    CHECK_STR(esc(&b, "a\\b'c", 5, UTIL_ESC_REPR), "a\\\\b\\'c");
    CHECK(!b.oom);
    sbuf_free(&b);
}

TEST(escape_of_code_points_covers_surrogates_and_the_out_of_range) {
    sbuf b;
    sbuf_init(&b);
    const uint32_t cps[] = {'A', 0x1B, 0xE9, 0xDC80, 0xDCFF, 0xD800, 0x200F, 0x110000, 0x1F600};
    for (size_t i = 0; i < ARRAY_LEN(cps); i++) {
        util_escape_cp(&b, cps[i], 0);
    }
    CHECK_STR(sbuf_str(&b), "A\\x1b\xc3\xa9\\x80\\xff\\ud800\\u200f\\U00110000\xf0\x9f\x98\x80");
    sbuf_free(&b);
}

TEST(escape_output_is_clean_and_escaping_it_again_changes_nothing) {
    /* Every byte value, then every pair that starts a sequence, through both
     * modes: the output is clean text and a fixed point. */
    sbuf b, again;
    sbuf_init(&b);
    sbuf_init(&again);
    char all[256];
    for (int i = 0; i < 256; i++) {
        all[i] = (char)i;
    }
    for (unsigned flags = 0; flags < 4; flags++) {
        unit_ctx("flags %u", flags);
        esc(&b, all, sizeof all, flags);
        CHECK(clean_text(b.data, b.len, flags & UTIL_ESC_KEEP_LINES));
        if (!(flags & UTIL_ESC_REPR)) { /* a repr doubles backslashes each time */
            esc(&again, b.data, b.len, flags);
            CHECK_EQ(again.len, b.len);
            CHECK(again.len == b.len && memcmp(again.data, b.data, b.len) == 0);
        }
    }
    for (int hi = 0xC0; hi < 0x100; hi++) {
        for (int lo = 0; lo < 0x100; lo++) {
            char two[3] = {(char)hi, (char)lo, (char)0x80};
            esc(&b, two, sizeof two, 0);
            if (!clean_text(b.data, b.len, false)) {
                unit_ctx("bytes %02x %02x", hi, lo);
                CHECK(false);
                hi = 0x100;
                break;
            }
        }
    }
    sbuf_free(&b);
    sbuf_free(&again);
}

TEST(escape_into_a_fixed_buffer_keeps_whole_characters_and_whole_escapes) {
    char out[8];
    CHECK_EQ(util_escape_buf(out, sizeof out,
                             "abc\x1b"
                             "d",
                             5, 0),
             7); /* abc\x1b */
    CHECK_STR(out, "abc\\x1b");
    CHECK_EQ(util_escape_buf(out, sizeof out, "abcd\x1b", 5, 0), 4); /* no room for \x1b */
    CHECK_STR(out, "abcd");
    CHECK_EQ(util_escape_buf(out, 6, "abcd\xc3\xa9", 6, 0), 4); /* é needs 2 more */
    CHECK_STR(out, "abcd");
    CHECK_EQ(util_escape_buf(out, sizeof out, "0123456789", 10, 0), 7);
    CHECK_STR(out, "0123456");
    char guard[2] = {'G', 'H'};
    CHECK_EQ(util_escape_buf(guard, 0, "abc", 3, 0), 0);
    CHECK_EQ(guard[0], 'G');
    CHECK_EQ(util_escape_buf(guard, 1, "abc", 3, 0), 0);
    CHECK_EQ(guard[0], '\0');
    CHECK_EQ(guard[1], 'H');
}

TEST(escape_cut_never_splits_a_sequence_or_an_escape) {
    const char *s = "ab\\x1bc\xc3\xa9\\u202e";
    size_t len = strlen(s);
    CHECK_EQ(util_escape_cut(s, len, 100), len);
    CHECK_EQ(util_escape_cut(s, len, 2), 2);  /* "ab" */
    CHECK_EQ(util_escape_cut(s, len, 3), 2);  /* not "ab\" */
    CHECK_EQ(util_escape_cut(s, len, 5), 2);  /* not "ab\x1" */
    CHECK_EQ(util_escape_cut(s, len, 6), 6);  /* "ab\x1b" */
    CHECK_EQ(util_escape_cut(s, len, 8), 7);  /* not half of é */
    CHECK_EQ(util_escape_cut(s, len, 12), 9); /* not "\u20" */
}

TEST(error_messages_escape_what_they_quote_from_a_target) {
    err_record rec = {0};
    err_clear(&rec);
    const char path[] = "/lib/x86_64\n\x1b[31mlibc\xff.so";
    err_set(&rec, ERR_NO_FILE, "%s was not found", path);
    CHECK_STR(rec.msg, "/lib/x86_64\\x0a\\x1b[31mlibc\\xff.so was not found");
    err_push(&rec, "task '%s'", "\x07");
    CHECK_STR(rec.ctx[0], "task '\\x07'");
    /* A message too long for the record ends before an escape, not in it. */
    char longer[ERR_MSG_MAX + 8];
    memset(longer, 'a', sizeof longer);
    longer[ERR_MSG_MAX - 3] = '\x1b';
    longer[sizeof longer - 1] = '\0';
    err_set(&rec, ERR_CORE, "%s", longer);
    CHECK_EQ(strlen(rec.msg), ERR_MSG_MAX - 3);
    CHECK(strchr(rec.msg, '\\') == NULL);
}

static int sink_to_sbuf(void *ctx, const char *data, size_t len) {
    sbuf_add(ctx, data, len);
    return 0;
}

TEST(the_writer_lets_no_control_character_or_bad_byte_through) {
    /* A view that forgot to escape still writes clean text: only its own
     * newlines and tabs pass. */
    sbuf got;
    sbuf_init(&got);
    out_writer w;
    out_init(&w, sink_to_sbuf, &got);
    out_printf(&w, "task '%s'\n", "\x1b]0;title\x07\xc3");
    out_puts(&w, "\tcol\xc2\x9b\n");
    CHECK(out_finish(&w));
    CHECK_STR(sbuf_str(&got), "task '\\x1b]0;title\\x07\\xc3'\n\tcol\\x9b\n");
    sbuf_free(&got);
}

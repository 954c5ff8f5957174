/* Prints snarl's built-in layout for one CPython minor version as "name value"
 * lines, then the _Py_DebugOffsets positions snarl reads for it, so that
 * tests/layout can compare both with the real headers. Given a file holding a
 * target's _Py_DebugOffsets table, prints the layout after snarl applied it. */
#include <stdio.h>
#include <stdlib.h>

#include "py/py.h"

/* Every py_layout member; test_layout.py checks this list against py.h, so
 * a member added there and not here fails the test instead of going unseen. */
#define LAYOUT_FIELDS(X)                                                                           \
    X(minor) X(free_threaded) X(rt_interp_head) X(rt_gil) X(is_next) X(is_id) X(is_threads_head)   \
    X(is_gc) X(is_modules) X(is_sysdict) X(is_builtins) X(is_gil_ptr) X(is_gil_embedded)           \
    X(gil_last_holder) X(gil_locked) X(ts_next) X(ts_interp) X(ts_cframe) X(cf_current_frame)      \
    X(ts_current_frame) X(ts_dict) X(ts_thread_id) X(ts_native_id) X(ts_datastack_chunk)           \
    X(ts_size) X(fr_code) X(fr_previous) X(fr_func) X(fr_globals) X(fr_locals) X(fr_instr)         \
    X(fr_stack) X(fr_owner) X(fr_localsplus) X(fr_size) X(fr_instr_is_last) X(fr_stack_is_ptr)     \
    X(stackref_tagged) X(fr_owner_first_nonpy) X(co_flags) X(co_argcount) X(co_firstlineno)        \
    X(co_nlocalsplus) X(co_localsplusnames) X(co_localspluskinds) X(co_filename) X(co_name)        \
    X(co_qualname) X(co_linetable) X(co_code_adaptive) X(co_framesize) X(ob_refcnt) X(ob_type)     \
    X(ob_size) X(tp_name) X(tp_basicsize) X(tp_itemsize) X(tp_flags) X(tp_weaklistoffset)          \
    X(tp_base) X(tp_dictoffset) X(tp_mro) X(ht_cached_keys) X(str_length) X(str_state)             \
    X(str_ascii_data) X(str_compact_data) X(str_legacy_data) X(long_lvtag) X(long_size)            \
    X(long_digits) X(tuple_items) X(list_items) X(list_allocated) X(bytes_size) X(bytes_data)      \
    X(dict_used) X(dict_keys) X(dict_values) X(dict_values_array) X(set_used) X(set_mask)          \
    X(set_table) X(deque_left) X(deque_right) X(deque_leftindex) X(deque_rightindex)               \
    X(wr_object) X(wr_callback) X(meth_func) X(meth_self) X(cfunc_self) X(cell_ref) X(func_code)   \
    X(func_qualname) X(mod_dict) X(managed) X(gen_frame_state) X(gen_iframe) X(gc_generation0)     \
    X(gc_permanent) X(gc_generations)

/* Where the fake runtime sits in the image; any page-aligned address does. */
#define DUMP_RUNTIME_ADDR 0x100000u
/* Larger than any _Py_DebugOffsets (3.15's is under 1 KiB). */
#define DUMP_TABLE_MAX 65536

static void dump_layout(const py_layout *L) {
#define PRINT_FIELD(f) printf("%s %lld\n", #f, (long long)L->f);
    LAYOUT_FIELDS(PRINT_FIELD)
#undef PRINT_FIELD
}

static void dump_debug_positions(int minor) {
    const char *path, *field;
    uint32_t pos;
    for (size_t i = 0; py_debug_offsets_entry(minor, i, &path, &field, &pos); i++) {
        printf("dbg %s %u %s\n", path ? path : "?", pos, field ? field : "-");
    }
}

/* Runs the real override path on a table the test built from the headers:
 * the same code that reads a live target's _PyRuntime. */
static int dump_with_debug_offsets(int minor, const char *file) {
    static unsigned char tab[DUMP_TABLE_MAX];
    FILE *f = fopen(file, "rb");
    if (!f) {
        perror(file);
        return 1;
    }
    size_t n = fread(tab, 1, sizeof tab, f);
    fclose(f);
    err_record err = {0};
    mem *m = mem_image_open(&err);
    if (!m || mem_image_add(m, DUMP_RUNTIME_ADDR, tab, n) != ERR_OK) {
        fprintf(stderr, "cannot make the memory image\n");
        return 1;
    }
    py_target t = {0};
    t.m = m;
    t.err = &err;
    t.runtime = DUMP_RUNTIME_ADDR;
    /* Py_Version as the target would report it: the table's own version
     * must then agree with the minor under test. */
    t.hexversion = (3u << 24) | ((uint32_t)minor << 16);
    snprintf(t.version, sizeof t.version, "3.%d", minor);
    int rc = 0;
    if (!py_layout_builtin(minor, &t.L)) {
        fprintf(stderr, "no built-in layout for 3.%d\n", minor);
        rc = 1;
    } else if (py_layout_from_debug_offsets(&t) != ERR_OK) {
        fprintf(stderr, "debug offsets rejected: %s\n", err.msg);
        rc = 1;
    } else {
        printf("debug_offsets_applied %d\n", t.debug_offsets ? 1 : 0);
        dump_layout(&t.L);
    }
    mem_close(m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s MINOR [DEBUG_OFFSETS_FILE]\n", argv[0]);
        return 2;
    }
    int minor = atoi(argv[1]);
    if (argc == 3) {
        return dump_with_debug_offsets(minor, argv[2]);
    }
    py_layout L;
    if (!py_layout_builtin(minor, &L)) {
        fprintf(stderr, "no built-in layout for 3.%d\n", minor);
        return 1;
    }
    dump_layout(&L);
    dump_debug_positions(minor);
    return 0;
}

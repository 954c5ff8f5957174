/* For tests/layout: prints snarl's built-in layout for a CPython minor version
 * as "name value" lines plus the _Py_DebugOffsets positions it reads, or, given
 * a _Py_DebugOffsets table in a file, the layout once snarl has applied it. */
#include <stdio.h>
#include <stdlib.h>

#include "py/py.h"

/* Every py_layout member; test_layout.py checks this list against py.h, so
 * a member added there and not here fails the test instead of going unseen. */
static void dump_layout(const py_layout *L) {
#define V(f) {#f, (long long)L->f}
    const struct {
        const char *name;
        long long value;
    } fields[] = {
        V(minor), V(free_threaded),
        V(rt_interp_head), V(rt_gil),
        V(is_next), V(is_id), V(is_threads_head), V(is_gc), V(is_modules), V(is_sysdict),
        V(is_builtins), V(is_gil_ptr), V(is_gil_embedded),
        V(gil_last_holder), V(gil_locked),
        V(ts_next), V(ts_interp), V(ts_cframe), V(cf_current_frame), V(cf_previous),
        V(ts_current_frame),
        V(ts_dict), V(ts_thread_id), V(ts_native_id), V(ts_datastack_chunk), V(ts_size),
        V(fr_code), V(fr_previous), V(fr_func), V(fr_globals), V(fr_locals), V(fr_instr),
        V(fr_stack), V(fr_owner), V(fr_localsplus), V(fr_size), V(fr_instr_is_last),
        V(fr_stack_is_ptr), V(stackref_tagged), V(fr_owner_first_nonpy),
        V(co_flags), V(co_argcount), V(co_firstlineno), V(co_nlocalsplus), V(co_localsplusnames),
        V(co_localspluskinds), V(co_filename), V(co_name), V(co_qualname), V(co_linetable),
        V(co_code_adaptive), V(co_framesize),
        V(ob_refcnt), V(ob_type), V(ob_size), V(tp_name), V(tp_basicsize), V(tp_itemsize),
        V(tp_flags), V(tp_weaklistoffset), V(tp_base), V(tp_dictoffset), V(tp_mro),
        V(ht_cached_keys),
        V(str_length), V(str_state), V(str_ascii_data), V(str_compact_data), V(str_legacy_data),
        V(long_lvtag), V(long_size), V(long_digits),
        V(tuple_items), V(list_items), V(list_allocated), V(bytes_size), V(bytes_data),
        V(dict_used), V(dict_keys), V(dict_values), V(dict_values_array),
        V(set_used), V(set_mask), V(set_table),
        V(deque_left), V(deque_right), V(deque_leftindex), V(deque_rightindex),
        V(wr_object), V(wr_callback), V(meth_func), V(meth_self), V(cfunc_self), V(cell_ref),
        V(func_code), V(func_qualname), V(mod_dict),
        V(managed),
        V(gen_frame_state), V(gen_iframe), V(gen_name), V(gen_exc_state), V(gen_code),
        V(fr_frame_obj), V(func_fields_end), V(refcnt_split), V(heap_c_types),
        V(gs_created), V(gs_suspended), V(gs_suspended_yf), V(gs_suspended_yf_locked),
        V(gs_executing), V(gs_cleared),
        V(op_resume), V(op_resume_alt), V(op_instrumented_resume),
        V(co_stacksize), V(float_value), V(func_closure),
        V(gc_generation0), V(gc_permanent), V(gc_generations),
    };
#undef V
    for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
        printf("%s %lld\n", fields[i].name, fields[i].value);
    }
}

/* Where the fake runtime sits in the image; any page-aligned address does. */
#define DUMP_RUNTIME_ADDR 0x100000u
/* Larger than any _Py_DebugOffsets (3.15's is under 1 KiB). */
#define DUMP_TABLE_MAX 65536

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

/* Reads the target's _Py_DebugOffsets (3.13+, at &_PyRuntime) and overrides
 * the built-in layout with it. The table comes from the target and is
 * untrusted: every field we take is listed below with the struct it belongs
 * to, and checked once against that struct's reported size and against the
 * buffer we later read the struct into. */
#include "py.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* The structs a debug offset points into, with the largest size we accept
 * for each: fields past these bounds would make us read beyond our buffers. */
typedef enum dbg_struct {
    DBG_RUNTIME,
    DBG_INTERP,
    DBG_GIL, /* struct _gil_runtime_state: size not reported */
    DBG_THREAD,
    DBG_FRAME,
    DBG_CODE,
    DBG_OBJECT,
    DBG_TYPE,
    DBG_TUPLE,
    DBG_LIST,
    DBG_DICT,
    DBG_LONG,
    DBG_BYTES,
    DBG_UNICODE,
    DBG_GEN,
    DBG_STRUCT_COUNT,
} dbg_struct;

/* Read-buffer sizes: thread states and frames are read whole; the others
 * field by field, but a sane bound still catches a corrupt table. */
static const uint32_t dbg_struct_max[DBG_STRUCT_COUNT] = {
    [DBG_RUNTIME] = 1u << 20, [DBG_INTERP] = 1u << 20, [DBG_GIL] = 256,
    [DBG_THREAD] = 4096,      [DBG_FRAME] = 256,       [DBG_CODE] = 1024,
    [DBG_OBJECT] = 64,        [DBG_TYPE] = 1024,       [DBG_TUPLE] = 64,
    [DBG_LIST] = 64,          [DBG_DICT] = 64,         [DBG_LONG] = 64,
    [DBG_BYTES] = 64,         [DBG_UNICODE] = 128,     [DBG_GEN] = 256,
};

typedef struct dbg_field {
    uint16_t pos;        /* byte position of the uint64 in _Py_DebugOffsets */
    uint16_t layout_off; /* offsetof(py_layout, field) of an int32_t field */
    uint8_t st;          /* dbg_struct */
} dbg_field;

typedef struct dbg_version {
    int minor;
    uint32_t total; /* sizeof(_Py_DebugOffsets) for this minor */
    uint16_t size_pos[DBG_STRUCT_COUNT]; /* where each struct's size is; 0 = not reported */
    const dbg_field *fields;
    size_t nfields;
} dbg_version;

#define F(pos, field, st) {pos, offsetof(py_layout, field), st}

/* Positions from Include/internal/pycore_runtime.h (3.13) and
 * pycore_debug_offsets.h (3.14, 3.15); tests/layout checks them against the
 * installed headers. */
static const dbg_field dbg_fields_313[] = {
    F(40, rt_interp_head, DBG_RUNTIME),     F(56, is_id, DBG_INTERP),
    F(64, is_next, DBG_INTERP),             F(72, is_threads_head, DBG_INTERP),
    F(80, is_gc, DBG_INTERP),               F(88, is_modules, DBG_INTERP),
    F(96, is_sysdict, DBG_INTERP),          F(104, is_builtins, DBG_INTERP),
    F(112, is_gil_ptr, DBG_INTERP),         F(120, is_gil_embedded, DBG_INTERP),
    F(136, gil_locked, DBG_INTERP),         F(144, gil_last_holder, DBG_INTERP),       F(168, ts_next, DBG_THREAD),
    F(176, ts_interp, DBG_THREAD),          F(184, ts_current_frame, DBG_THREAD),
    F(192, ts_thread_id, DBG_THREAD),       F(200, ts_native_id, DBG_THREAD),       F(208, ts_datastack_chunk, DBG_THREAD),
    F(232, fr_previous, DBG_FRAME),         F(240, fr_code, DBG_FRAME),
    F(248, fr_instr, DBG_FRAME),            F(256, fr_localsplus, DBG_FRAME),
    F(264, fr_owner, DBG_FRAME),            F(280, co_filename, DBG_CODE),
    F(288, co_name, DBG_CODE),              F(296, co_qualname, DBG_CODE),
    F(304, co_linetable, DBG_CODE),         F(312, co_firstlineno, DBG_CODE),
    F(320, co_argcount, DBG_CODE),          F(328, co_localsplusnames, DBG_CODE),
    F(336, co_localspluskinds, DBG_CODE),   F(344, co_code_adaptive, DBG_CODE),
    F(360, ob_type, DBG_OBJECT),            F(376, tp_name, DBG_TYPE),
    F(392, tp_flags, DBG_TYPE),             F(408, tuple_items, DBG_TUPLE),
    F(432, list_items, DBG_LIST),           F(456, dict_keys, DBG_DICT),
    F(464, dict_values, DBG_DICT),          F(496, long_size, DBG_LONG),
    F(504, long_digits, DBG_LONG),          F(520, bytes_size, DBG_BYTES),
    F(528, bytes_data, DBG_BYTES),          F(544, str_state, DBG_UNICODE),
    F(552, str_length, DBG_UNICODE),        F(560, str_ascii_data, DBG_UNICODE),
};

static const dbg_field dbg_fields_314[] = {
    F(40, rt_interp_head, DBG_RUNTIME),     F(56, is_id, DBG_INTERP),
    F(64, is_next, DBG_INTERP),             F(72, is_threads_head, DBG_INTERP),
    F(88, is_gc, DBG_INTERP),               F(96, is_modules, DBG_INTERP),
    F(104, is_sysdict, DBG_INTERP),         F(112, is_builtins, DBG_INTERP),
    F(120, is_gil_ptr, DBG_INTERP),         F(128, is_gil_embedded, DBG_INTERP),
    F(144, gil_locked, DBG_INTERP),         F(152, gil_last_holder, DBG_INTERP),       F(192, ts_next, DBG_THREAD),
    F(200, ts_interp, DBG_THREAD),          F(208, ts_current_frame, DBG_THREAD),
    F(216, ts_thread_id, DBG_THREAD),       F(224, ts_native_id, DBG_THREAD),       F(232, ts_datastack_chunk, DBG_THREAD),
    F(256, fr_previous, DBG_FRAME),         F(264, fr_code, DBG_FRAME),
    F(272, fr_instr, DBG_FRAME),            F(280, fr_localsplus, DBG_FRAME),
    F(288, fr_owner, DBG_FRAME),            F(296, fr_stack, DBG_FRAME),
    F(320, co_filename, DBG_CODE),          F(328, co_name, DBG_CODE),
    F(336, co_qualname, DBG_CODE),          F(344, co_linetable, DBG_CODE),
    F(352, co_firstlineno, DBG_CODE),       F(360, co_argcount, DBG_CODE),
    F(368, co_localsplusnames, DBG_CODE),   F(376, co_localspluskinds, DBG_CODE),
    F(384, co_code_adaptive, DBG_CODE),     F(408, ob_type, DBG_OBJECT),
    F(424, tp_name, DBG_TYPE),              F(440, tp_flags, DBG_TYPE),
    F(456, tuple_items, DBG_TUPLE),         F(480, list_items, DBG_LIST),
    F(536, dict_keys, DBG_DICT),            F(544, dict_values, DBG_DICT),
    F(576, long_size, DBG_LONG),            F(584, long_digits, DBG_LONG),
    F(600, bytes_size, DBG_BYTES),          F(608, bytes_data, DBG_BYTES),
    F(624, str_state, DBG_UNICODE),         F(632, str_length, DBG_UNICODE),
    F(640, str_ascii_data, DBG_UNICODE),    F(680, gen_iframe, DBG_GEN),
    F(688, gen_frame_state, DBG_GEN),
};

static const dbg_field dbg_fields_315[] = {
    F(40, rt_interp_head, DBG_RUNTIME),     F(56, is_id, DBG_INTERP),
    F(64, is_next, DBG_INTERP),             F(72, is_threads_head, DBG_INTERP),
    F(88, is_gc, DBG_INTERP),               F(96, is_modules, DBG_INTERP),
    F(104, is_sysdict, DBG_INTERP),         F(112, is_builtins, DBG_INTERP),
    F(120, is_gil_ptr, DBG_INTERP),         F(128, is_gil_embedded, DBG_INTERP),
    F(144, gil_locked, DBG_INTERP),         F(152, gil_last_holder, DBG_INTERP),       F(192, ts_next, DBG_THREAD),
    F(200, ts_interp, DBG_THREAD),          F(208, ts_current_frame, DBG_THREAD),
    F(240, ts_thread_id, DBG_THREAD),       F(248, ts_native_id, DBG_THREAD),       F(256, ts_datastack_chunk, DBG_THREAD),
    F(320, fr_previous, DBG_FRAME),         F(328, fr_code, DBG_FRAME),
    F(336, fr_instr, DBG_FRAME),            F(344, fr_localsplus, DBG_FRAME),
    F(352, fr_owner, DBG_FRAME),            F(360, fr_stack, DBG_FRAME),
    F(384, co_filename, DBG_CODE),          F(392, co_name, DBG_CODE),
    F(400, co_qualname, DBG_CODE),          F(408, co_linetable, DBG_CODE),
    F(416, co_firstlineno, DBG_CODE),       F(424, co_argcount, DBG_CODE),
    F(432, co_localsplusnames, DBG_CODE),   F(440, co_localspluskinds, DBG_CODE),
    F(448, co_code_adaptive, DBG_CODE),     F(472, ob_type, DBG_OBJECT),
    F(488, tp_name, DBG_TYPE),              F(504, tp_flags, DBG_TYPE),
    F(512, tp_basicsize, DBG_TYPE),         F(520, tp_dictoffset, DBG_TYPE),
    F(552, tuple_items, DBG_TUPLE),         F(576, list_items, DBG_LIST),
    F(632, dict_keys, DBG_DICT),            F(640, dict_values, DBG_DICT),
    F(672, long_size, DBG_LONG),            F(680, long_digits, DBG_LONG),
    F(696, bytes_size, DBG_BYTES),          F(704, bytes_data, DBG_BYTES),
    F(720, str_state, DBG_UNICODE),         F(728, str_length, DBG_UNICODE),
    F(736, str_ascii_data, DBG_UNICODE),    F(808, gen_iframe, DBG_GEN),
    F(816, gen_frame_state, DBG_GEN),
};
#undef F

static const dbg_version dbg_versions[] = {
    {13, 584,
     {[DBG_RUNTIME] = 24, [DBG_INTERP] = 48, [DBG_THREAD] = 152, [DBG_FRAME] = 224,
      [DBG_CODE] = 272, [DBG_OBJECT] = 352, [DBG_TYPE] = 368, [DBG_TUPLE] = 400,
      [DBG_LIST] = 424, [DBG_DICT] = 448, [DBG_LONG] = 488, [DBG_BYTES] = 512,
      [DBG_UNICODE] = 536},
     dbg_fields_313, ARRAY_LEN(dbg_fields_313)},
    {14, 760,
     {[DBG_RUNTIME] = 24, [DBG_INTERP] = 48, [DBG_THREAD] = 176, [DBG_FRAME] = 248,
      [DBG_CODE] = 312, [DBG_OBJECT] = 400, [DBG_TYPE] = 416, [DBG_TUPLE] = 448,
      [DBG_LIST] = 472, [DBG_DICT] = 528, [DBG_LONG] = 568, [DBG_BYTES] = 592,
      [DBG_UNICODE] = 616, [DBG_GEN] = 664},
     dbg_fields_314, ARRAY_LEN(dbg_fields_314)},
    {15, 888,
     {[DBG_RUNTIME] = 24, [DBG_INTERP] = 48, [DBG_THREAD] = 176, [DBG_FRAME] = 312,
      [DBG_CODE] = 376, [DBG_OBJECT] = 464, [DBG_TYPE] = 480, [DBG_TUPLE] = 544,
      [DBG_LIST] = 568, [DBG_DICT] = 624, [DBG_LONG] = 664, [DBG_BYTES] = 688,
      [DBG_UNICODE] = 712, [DBG_GEN] = 792},
     dbg_fields_315, ARRAY_LEN(dbg_fields_315)},
};

#define DBG_COOKIE "xdebugpy"
/* The whole table fits in this; 3.15's is 888 bytes. */
#define DBG_TABLE_MAX 2048

static const dbg_version *dbg_find(int minor) {
    for (size_t i = 0; i < ARRAY_LEN(dbg_versions); i++) {
        if (dbg_versions[i].minor == minor) {
            return &dbg_versions[i];
        }
    }
    return NULL;
}

err_t py_layout_from_debug_offsets(py_target *t) {
    const dbg_version *dv = dbg_find(t->L.minor);
    if (!dv) {
        return ERR_OK; /* 3.11 and 3.12 have no debug offsets */
    }
    uint8_t tab[DBG_TABLE_MAX];
    if (mem_read(t->m, t->runtime, dv->total, tab) != ERR_OK) {
        return err_set(t->err, ERR_CORE,
                       "the Python runtime at 0x%llx is not readable (%u bytes of debug offsets)",
                       (unsigned long long)t->runtime, dv->total);
    }
    if (memcmp(tab, DBG_COOKIE, 8) != 0) {
        return err_set(t->err, ERR_CORRUPT,
                       "the Python runtime at 0x%llx lacks the debug-offsets cookie",
                       (unsigned long long)t->runtime);
    }
    uint64_t version = rd_u64(tab, 8);
    if ((version >> 16) != (t->hexversion >> 16)) {
        return err_set(t->err, ERR_CORRUPT,
                       "debug offsets say version 0x%llx but Py_Version says 0x%x",
                       (unsigned long long)version, t->hexversion);
    }
    uint64_t ft = rd_u64(tab, 16);
    if (ft > 1) {
        return err_set(t->err, ERR_CORRUPT, "debug offsets: free_threaded is %llu",
                       (unsigned long long)ft);
    }
    if (ft == 1) {
        return err_set(t->err, ERR_UNSUPPORTED,
                       "Python %s is a free-threaded build; snarl reads default (GIL) builds",
                       t->version);
    }
    uint64_t sizes[DBG_STRUCT_COUNT];
    for (int s = 0; s < DBG_STRUCT_COUNT; s++) {
        sizes[s] = dv->size_pos[s] ? rd_u64(tab, dv->size_pos[s]) : dbg_struct_max[s];
        if (sizes[s] == 0 || sizes[s] > dbg_struct_max[s]) {
            return err_set(t->err, ERR_CORRUPT,
                           "debug offsets: struct %d has implausible size %llu", s,
                           (unsigned long long)sizes[s]);
        }
    }
    py_layout L = t->L;
    for (size_t i = 0; i < dv->nfields; i++) {
        const dbg_field *f = &dv->fields[i];
        uint64_t off = rd_u64(tab, f->pos);
        /* Every field is at most 8 bytes wide; it must lie inside its struct. */
        if (off > sizes[f->st] || sizes[f->st] - off < 1 || off > INT32_MAX) {
            return err_set(t->err, ERR_CORRUPT,
                           "debug offsets: field at %u is %llu, outside its struct (%llu bytes)",
                           f->pos, (unsigned long long)off, (unsigned long long)sizes[f->st]);
        }
        int32_t v = (int32_t)off;
        memcpy((char *)&L + f->layout_off, &v, sizeof v);
    }
    /* The GIL fields are given relative to the interpreter's embedded
     * _gil; we read them through interp->ceval.gil (which may point at the
     * main interpreter's GIL), so make them relative to the GIL struct. */
    L.gil_locked -= L.is_gil_embedded;
    L.gil_last_holder -= L.is_gil_embedded;
    if (L.gil_locked < 0 || L.gil_locked >= (int32_t)dbg_struct_max[DBG_GIL] ||
        L.gil_last_holder < 0 || L.gil_last_holder >= (int32_t)dbg_struct_max[DBG_GIL]) {
        return err_set(t->err, ERR_CORRUPT, "debug offsets: GIL fields outside the GIL state");
    }
    /* The compact ASCII data follows the PyASCIIObject header; non-ASCII
     * compact data follows PyCompactUnicodeObject, 16 bytes further in
     * every version with debug offsets. */
    L.str_compact_data = L.str_ascii_data + 16;
    L.str_legacy_data = L.str_compact_data;
    L.fr_size = (uint32_t)sizes[DBG_FRAME];
    L.ts_size = (uint32_t)sizes[DBG_THREAD];
    t->L = L;
    t->debug_offsets = true;
    return ERR_OK;
}

/* The _Py_DebugOffsets member each field is read from (the same member in
 * every version so far), so that tests/layout can check every position above
 * against offsetof() in the real headers. A field missing here makes that
 * test fail. */
#define P(field, path) {offsetof(py_layout, field), #field, path}
static const struct {
    uint16_t layout_off;
    const char *field;
    const char *path;
} dbg_paths[] = {
    P(rt_interp_head, "runtime_state.interpreters_head"),
    P(is_id, "interpreter_state.id"),
    P(is_next, "interpreter_state.next"),
    P(is_threads_head, "interpreter_state.threads_head"),
    P(is_gc, "interpreter_state.gc"),
    P(is_modules, "interpreter_state.imports_modules"),
    P(is_sysdict, "interpreter_state.sysdict"),
    P(is_builtins, "interpreter_state.builtins"),
    P(is_gil_ptr, "interpreter_state.ceval_gil"),
    P(is_gil_embedded, "interpreter_state.gil_runtime_state"),
    P(gil_locked, "interpreter_state.gil_runtime_state_locked"),
    P(gil_last_holder, "interpreter_state.gil_runtime_state_holder"),
    P(ts_next, "thread_state.next"),
    P(ts_interp, "thread_state.interp"),
    P(ts_current_frame, "thread_state.current_frame"),
    P(ts_thread_id, "thread_state.thread_id"),
    P(ts_native_id, "thread_state.native_thread_id"),
    P(ts_datastack_chunk, "thread_state.datastack_chunk"),
    P(fr_previous, "interpreter_frame.previous"),
    P(fr_code, "interpreter_frame.executable"),
    P(fr_instr, "interpreter_frame.instr_ptr"),
    P(fr_localsplus, "interpreter_frame.localsplus"),
    P(fr_owner, "interpreter_frame.owner"),
    P(fr_stack, "interpreter_frame.stackpointer"),
    P(co_filename, "code_object.filename"),
    P(co_name, "code_object.name"),
    P(co_qualname, "code_object.qualname"),
    P(co_linetable, "code_object.linetable"),
    P(co_firstlineno, "code_object.firstlineno"),
    P(co_argcount, "code_object.argcount"),
    P(co_localsplusnames, "code_object.localsplusnames"),
    P(co_localspluskinds, "code_object.localspluskinds"),
    P(co_code_adaptive, "code_object.co_code_adaptive"),
    P(ob_type, "pyobject.ob_type"),
    P(tp_name, "type_object.tp_name"),
    P(tp_flags, "type_object.tp_flags"),
    P(tp_basicsize, "type_object.tp_basicsize"),
    P(tp_dictoffset, "type_object.tp_dictoffset"),
    P(tuple_items, "tuple_object.ob_item"),
    P(list_items, "list_object.ob_item"),
    P(dict_keys, "dict_object.ma_keys"),
    P(dict_values, "dict_object.ma_values"),
    P(long_size, "long_object.lv_tag"),
    P(long_digits, "long_object.ob_digit"),
    P(bytes_size, "bytes_object.ob_size"),
    P(bytes_data, "bytes_object.ob_sval"),
    P(str_state, "unicode_object.state"),
    P(str_length, "unicode_object.length"),
    P(str_ascii_data, "unicode_object.asciiobject_size"),
    P(gen_iframe, "gen_object.gi_iframe"),
    P(gen_frame_state, "gen_object.gi_frame_state"),
};
#undef P

static const char *const dbg_size_paths[DBG_STRUCT_COUNT] = {
    [DBG_RUNTIME] = "runtime_state.size",  [DBG_INTERP] = "interpreter_state.size",
    [DBG_THREAD] = "thread_state.size",    [DBG_FRAME] = "interpreter_frame.size",
    [DBG_CODE] = "code_object.size",       [DBG_OBJECT] = "pyobject.size",
    [DBG_TYPE] = "type_object.size",       [DBG_TUPLE] = "tuple_object.size",
    [DBG_LIST] = "list_object.size",       [DBG_DICT] = "dict_object.size",
    [DBG_LONG] = "long_object.size",       [DBG_BYTES] = "bytes_object.size",
    [DBG_UNICODE] = "unicode_object.size", [DBG_GEN] = "gen_object.size",
};

bool py_debug_offsets_entry(int minor, size_t i, const char **path, const char **field,
                            uint32_t *pos) {
    const dbg_version *dv = dbg_find(minor);
    if (!dv) {
        return false;
    }
    *path = NULL;
    *field = NULL;
    if (i < dv->nfields) {
        const dbg_field *f = &dv->fields[i];
        for (size_t k = 0; k < ARRAY_LEN(dbg_paths); k++) {
            if (dbg_paths[k].layout_off == f->layout_off) {
                *path = dbg_paths[k].path;
                *field = dbg_paths[k].field;
            }
        }
        *pos = f->pos;
        return true;
    }
    i -= dv->nfields;
    for (int s = 0; s < DBG_STRUCT_COUNT; s++) {
        if (dv->size_pos[s] && i-- == 0) {
            *path = dbg_size_paths[s];
            *pos = dv->size_pos[s];
            return true;
        }
    }
    if (i == 0) {
        *path = "sizeof";
        *pos = dv->total;
        return true;
    }
    return false;
}

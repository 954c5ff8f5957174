/* The CPython layer: version detection, one normalized layout table per
 * target, and bounded readers for the runtime, interpreters, threads, frames,
 * code objects and the builtin object types. Knows nothing of asyncio. */
#ifndef SNARL_PY_H
#define SNARL_PY_H

#include <stdbool.h>
#include <stdint.h>

#include "../mem/mem.h"
#include "../sym/sym.h"

/* An absent field; never offset 0, which is a real offset. */
#define PY_NONE (-1)

/* Longest string we decode (code points): function and file names, reprs.
 * Longer strings are cut and marked. */
#define PY_STR_MAX 4096
/* Frames per thread or coroutine we walk; deeper stacks are cut and marked
 * (CPython's default recursion limit is 1000). */
#define PY_FRAMES_MAX 4096
/* Threads per interpreter and interpreters per runtime we walk. */
#define PY_THREADS_MAX 4096
#define PY_INTERPRETERS_MAX 256
/* Largest line table and code object we read (bytes). */
#define PY_LINETABLE_MAX (1u << 20)
/* Largest container we walk (items of a tuple, list, dict or set). */
#define PY_CONTAINER_MAX (1u << 24)
/* Digits of an int we decode (30 bits each); larger ints show as "<big int>". */
#define PY_LONG_DIGITS_MAX 3

typedef enum py_managed_kind {
    PY_MANAGED_311,    /* dict at -24, values array at -32 */
    PY_MANAGED_312,    /* -24 holds dict, or values-1 tagged with bit 0 */
    PY_MANAGED_INLINE, /* 3.13+: dict at -24, values inline at tp_basicsize */
} py_managed_kind;

typedef struct py_layout {
    int minor;
    bool free_threaded;
    /* _PyRuntimeState */
    int32_t rt_interp_head, rt_gil;
    /* PyInterpreterState */
    int32_t is_next, is_id, is_threads_head, is_gc, is_modules, is_sysdict, is_builtins;
    int32_t is_gil_ptr;
    int32_t is_gil_embedded; /* 3.13+: the interpreter's own _gil (debug offsets only) */
    /* struct _gil_runtime_state */
    int32_t gil_last_holder, gil_locked;
    /* PyThreadState */
    int32_t ts_next, ts_interp, ts_cframe, cf_current_frame, ts_current_frame;
    int32_t cf_previous; /* 3.11/3.12: the C frame of the evaluation loop below */
    int32_t ts_dict, ts_thread_id, ts_native_id, ts_datastack_chunk;
    uint32_t ts_size;
    /* _PyInterpreterFrame */
    int32_t fr_code, fr_previous, fr_func, fr_globals, fr_locals, fr_instr, fr_stack, fr_owner;
    int32_t fr_localsplus;
    uint32_t fr_size;
    bool fr_instr_is_last;    /* prev_instr (3.11, 3.12) rather than instr_ptr */
    bool fr_stack_is_ptr;     /* stackpointer (3.14+) rather than an int32 index */
    bool stackref_tagged;     /* frame slots are _PyStackRef (3.14+) */
    int fr_owner_first_nonpy; /* owner values from here on are not Python frames */
    /* PyCodeObject */
    int32_t co_flags, co_argcount, co_firstlineno, co_nlocalsplus, co_localsplusnames;
    int32_t co_localspluskinds, co_filename, co_name, co_qualname, co_linetable;
    int32_t co_code_adaptive;
    int32_t co_framesize; /* words a frame of this code takes on the data stack (3.12+) */
    /* Objects and types */
    int32_t ob_refcnt, ob_type, ob_size;
    int32_t tp_name, tp_basicsize, tp_itemsize, tp_flags, tp_weaklistoffset, tp_base;
    int32_t tp_dictoffset, tp_mro, ht_cached_keys;
    /* str */
    int32_t str_length, str_state, str_ascii_data, str_compact_data, str_legacy_data;
    /* int */
    bool long_lvtag;
    int32_t long_size, long_digits;
    /* tuple, list, bytes */
    int32_t tuple_items, list_items, list_allocated, bytes_size, bytes_data;
    /* dict */
    int32_t dict_used, dict_keys, dict_values, dict_values_array;
    /* set */
    int32_t set_used, set_mask, set_table;
    /* collections.deque */
    int32_t deque_left, deque_right, deque_leftindex, deque_rightindex;
    /* weakref, method, builtin method, cell, function, module */
    int32_t wr_object, wr_callback, meth_func, meth_self, cfunc_self, cell_ref;
    int32_t func_code, func_qualname, mod_dict;
    /* instance dicts */
    py_managed_kind managed;
    /* generators and coroutines */
    int32_t gen_frame_state, gen_iframe;
    int32_t gen_name, gen_exc_state, gen_code; /* gen_code: 3.11 only */
    /* what tp_traverse visits that differs by version */
    int32_t fr_frame_obj;    /* the frame's PyFrameObject */
    int32_t func_fields_end; /* past a function's last object field */
    bool refcnt_split;       /* 3.12+: immortal when the low 32 bits are negative */
    bool heap_c_types;       /* 3.12+: deque, _asyncio types are heap types instances visit */
    int8_t gs_created, gs_suspended, gs_suspended_yf, gs_suspended_yf_locked, gs_executing;
    int8_t gs_cleared; /* states at or past this one: the frame is gone */
    /* 3.11/3.12 tell an await from a plain yield by the RESUME after prev_instr */
    int op_resume, op_resume_alt, op_instrumented_resume;
    /* the value stack of a suspended frame: its top is the awaited object */
    int32_t co_stacksize;
    int32_t float_value;
    int32_t func_closure;
    /* gc */
    int32_t gc_generation0, gc_permanent;
    int gc_generations;
} py_layout;

/* Type objects the interpreter exports, resolved once per target. */
typedef struct py_types {
    uint64_t code, str, long_, bool_, tuple, list, dict, set, frozenset, bytes, float_;
    uint64_t coro, gen, asyncgen, method, cfunction, cell, function, module, type, weakref;
    uint64_t none, true_, false_;
} py_types;

typedef struct py_code_cache py_code_cache;

typedef struct py_target {
    mem *m;
    sym_table *sym;
    err_record *err;
    py_layout L;
    py_types types;
    uint64_t runtime;       /* &_PyRuntime */
    uint32_t hexversion;    /* Py_Version */
    char version[32];       /* "3.14.10" */
    bool debug_offsets;     /* the layout was checked against the target's own table */
    const sym_file *pyfile; /* the file that holds _PyRuntime */
    py_code_cache *codes;
} py_target;

err_t py_open(py_target *t, mem *m, sym_table *sym, err_record *err);
void py_close(py_target *t);

/* Fills L with the built-in table for minor (11..15); false if unknown. */
bool py_layout_builtin(int minor, py_layout *L);
/* Reads the target's _Py_DebugOffsets (3.13+), validates every field we use
 * and overrides the built-in values with the target's. */
err_t py_layout_from_debug_offsets(py_target *t);
/* For tests/layout: entry i of the debug-offset table read for minor (false
 * past the end, or below 3.13). First the fields: path is the _Py_DebugOffsets
 * member read at byte pos, field the py_layout member it fills (both NULL if
 * the member is not named). Then the struct sizes read ("thread_state.size",
 * field NULL), then path "sizeof" with pos the number of bytes read. */
bool py_debug_offsets_entry(int minor, size_t i, const char **path, const char **field,
                            uint32_t *pos);

/* Interpreters and threads. */
typedef struct py_thread {
    uint64_t addr;
    uint64_t interp;
    int64_t interp_id;
    int64_t native_id;
    uint64_t thread_id;   /* pthread_t, the key of threading._active */
    uint64_t frame;       /* innermost _PyInterpreterFrame, 0 if none */
    uint64_t outer_frame; /* 3.11/3.12: the frame that entered the innermost
                           * evaluation loop, 0 if none or unknown */
    uint64_t base_frame;  /* first frame slot of the data stack, 0 if unknown */
    bool holds_gil;
    char name[64]; /* threading.Thread name, empty if unknown */
} py_thread;

typedef struct py_threads_result {
    vec threads;    /* py_thread */
    bool truncated; /* a limit was hit or a list was broken */
} py_threads_result;

err_t py_threads(py_target *t, py_threads_result *out);
void py_threads_free(py_threads_result *r);

/* Frames. */
typedef struct py_frame {
    uint64_t addr;
    uint64_t code;     /* 0 when not a code object */
    uint64_t raw_code; /* the code slot as stored (tags stripped) */
    uint64_t previous;
    int owner;
    bool is_python;       /* a real Python frame (not a shim, entry or C frame) */
    const char *qualname; /* owned by the code cache */
    const char *filename;
    int line; /* -1 when unknown */
    uint64_t instr;
    int nlocalsplus; /* of its code; -1 when not Python code */
    int stack_depth; /* values on its evaluation stack; -1 when unknown */
} py_frame;

/* Reads the frame at addr; err set only for an unreadable frame. */
err_t py_frame_read(py_target *t, uint64_t addr, py_frame *out);
/* Frame owner of frames on a thread's data stack. */
#define PY_FRAME_OWNED_BY_THREAD 0
/* Finds the data-stack frame pushed just before the one at anchor: frames
 * of a thread are contiguous there, each co_framesize words long. Used when
 * the link between them (an entry frame on the C stack) is missing from a
 * core. Returns ERR_NOT_FOUND when no frame fits. */
err_t py_frame_find_below(py_target *t, uint64_t anchor, uint64_t *found);

/* Code objects, cached per target. */
/* Lines a code object remembers (py_frame_read): the instructions its
 * suspended coroutines wait at are few. */
#define PY_CODE_LINE_MEMO 4

typedef struct py_code {
    uint64_t addr;
    char *qualname;
    char *filename;
    int firstlineno;
    uint8_t *linetable;
    size_t linetable_len;
    int nlocalsplus;
    /* 1 + an instruction index, 0 when unused, and its line. */
    int64_t memo_idx[PY_CODE_LINE_MEMO];
    int memo_line[PY_CODE_LINE_MEMO];
    unsigned memo_next;
} py_code;

err_t py_code_get(py_target *t, uint64_t addr, const py_code **out);
/* Line of the instruction at code-unit index idx, -1 when it has none. */
int py_code_line(const py_code *c, int64_t idx);

/* Object readers. Each returns ERR_OK, ERR_READ or ERR_CORRUPT. */
err_t py_type_of(py_target *t, uint64_t obj, uint64_t *type);
err_t py_type_name(py_target *t, uint64_t type, char *buf, size_t cap);
/* tp_flags of a type; 0 when unreadable (no flag claimed). */
uint64_t py_type_flags(py_target *t, uint64_t type);
/* Text out of the target is escaped where it is read (util_escape: no
 * control character, always valid UTF-8), so that nothing above this layer
 * holds raw target bytes and no view or message can forget to clean them. */

/* Appends the text of a str object (at most max_chars code points),
 * escaped; sets *cut when the string was longer. */
err_t py_read_str(py_target *t, uint64_t obj, sbuf *out, size_t max_chars, bool *cut);
/* The same with the escapes of a repr body ('\\' and '\'' too). */
err_t py_read_str_repr(py_target *t, uint64_t obj, sbuf *out, size_t max_chars, bool *cut);
/* At most cap - 1 bytes of escaped text, never cut inside a character or
 * an escape. */
err_t py_read_str_buf(py_target *t, uint64_t obj, char *buf, size_t cap);
/* A C string of the target (a type's tp_name, a method's ml_name), at most
 * PY_CSTR_MAX raw bytes, escaped into buf. */
err_t py_read_cstr(py_target *t, uint64_t addr, char *buf, size_t cap);
/* Longest C string read from the target: type and method names. */
#define PY_CSTR_MAX 256
err_t py_read_long(py_target *t, uint64_t obj, int64_t *out);
/* n consecutive 64-bit words at `at`, appended to out (vec of uint64_t). */
err_t py_read_words(py_target *t, uint64_t at, uint64_t n, vec *out);
err_t py_tuple_items(py_target *t, uint64_t obj, vec *out); /* vec of uint64_t */
err_t py_list_items(py_target *t, uint64_t obj, vec *out);
err_t py_set_items(py_target *t, uint64_t obj, vec *out);
err_t py_deque_items(py_target *t, uint64_t obj, vec *out);
/* Dict entries as key, value pairs appended to out (vec of uint64_t). */
err_t py_dict_items(py_target *t, uint64_t obj, vec *out);
/* The key, value pairs of a keys object, values from the split values
 * array when values is not 0 (a dict's ma_values, or instance values). */
err_t py_keys_values_items(py_target *t, uint64_t keys, uint64_t values, vec *out);
/* Value for a str key, 0 when absent. */
err_t py_dict_get_str(py_target *t, uint64_t dict, const char *key, uint64_t *value);
/* Instance attribute of a heap-type object, 0 when absent. */
err_t py_attr(py_target *t, uint64_t obj, const char *name, uint64_t *value);
/* Module object from sys.modules; 0 when absent. */
err_t py_module(py_target *t, uint64_t interp, const char *name, uint64_t *module);
/* Strips _PyStackRef tags (3.14+); 0 for NULL and tagged ints. */
uint64_t py_stackref_obj(const py_target *t, uint64_t bits);

/* Generators, coroutines and async generators. */
typedef enum py_gen_state {
    PY_GEN_CREATED,   /* never started */
    PY_GEN_SUSPENDED, /* at a plain yield */
    PY_GEN_AWAITING,  /* at await / yield from: `awaited` is set */
    PY_GEN_RUNNING,   /* its frame is on a thread's stack */
    PY_GEN_FINISHED,  /* completed or cleared: no frame */
} py_gen_state;

typedef struct py_gen {
    uint64_t addr;
    uint64_t frame; /* the embedded _PyInterpreterFrame */
    py_gen_state state;
    uint64_t awaited; /* what it awaits (PY_GEN_AWAITING), else 0 */
} py_gen;

/* Reads a generator-like object (coroutine, generator, async generator):
 * its frame, its state, and what it awaits, the way each version's
 * _PyGen_yf would. */
err_t py_gen_read(py_target *t, uint64_t obj, py_gen *out);
/* Number of value-stack slots above the locals of a suspended frame whose
 * code has nlocalsplus locals. */
err_t py_frame_stack_depth(py_target *t, uint64_t frame, int nlocalsplus, int *depth);
/* The same from the stack word already read (a pointer on 3.14+, an index
 * before); -1 when it is out of bounds. */
int py_frame_depth_of(const py_layout *L, uint64_t frame, uint64_t word, int nlocalsplus);
/* The raw stack reference in slot i (3.14+: tag bits kept, bit 0 set means
 * borrowed: not counted in the referent's refcount). */
err_t py_frame_slot_raw(py_target *t, uint64_t frame, int i, uint64_t *bits);
/* ob_refcnt; *immortal for 3.12+ immortal objects. */
err_t py_refcount(py_target *t, uint64_t obj, uint64_t *count, bool *immortal);

/* Local slot i of a frame (locals, cells, then the value stack), tags
 * stripped; 0 for NULL. */
err_t py_frame_slot(py_target *t, uint64_t frame, int i, uint64_t *value);
/* Names of a code object's locals (co_localsplusnames), vec of uint64_t str objects. */
err_t py_code_local_names(py_target *t, uint64_t code, vec *names);
/* A __slots__ member of an instance (searched through the type's bases);
 * 0 when absent or unset. */
err_t py_slot(py_target *t, uint64_t obj, const char *name, uint64_t *value);
err_t py_read_float(py_target *t, uint64_t obj, double *out);
/* True when type or one of its bases is called name (tp_name). */
bool py_type_is(py_target *t, uint64_t type, const char *name);
/* A function object's closure cells' contents, in co_freevars order. */
err_t py_func_closure(py_target *t, uint64_t func, vec *cells);
/* The content of the closure cell of func named name; 0 when absent. */
err_t py_func_closure_var(py_target *t, uint64_t func, const char *name, uint64_t *value);

/* GC-tracked objects of an interpreter; cb returns non-zero to stop. */
typedef int (*py_gc_cb)(void *ctx, uint64_t obj);
err_t py_gc_each(py_target *t, uint64_t interp, py_gc_cb cb, void *ctx, bool *truncated);
/* Objects we follow on the GC lists, over all generations. */
#define PY_GC_OBJECTS_MAX (1u << 26)
/* The generation py_gc_each_gen reports for gc.freeze()'s permanent list. */
#define PY_GC_PERMANENT (-1)
typedef int (*py_gc_gen_cb)(void *ctx, uint64_t obj, int generation);
err_t py_gc_each_gen(py_target *t, uint64_t interp, py_gc_gen_cb cb, void *ctx, bool *truncated);

/* Reference counts (py_traverse.c). False for an immortal object (3.12+:
 * the low 32 bits, as an int32, are negative); else *count is the count. */
bool py_refcount_word(const py_target *t, uint64_t word, int64_t *count);

/* References as CPython's cycle collector sees them (py_traverse.c): what
 * each type's tp_traverse visits, for the types snarl knows, read from the
 * target. A type is known by its tp_traverse function, so subclasses of
 * builtin types are too; instances of Python classes get subtype_traverse's
 * part (__slots__, the instance dict or values, the heap type). What is not
 * known is left out, never guessed: a caller that subtracts references
 * only ever subtracts real ones. */

/* Set in an enumerated reference that does not own a count (a 3.14+
 * borrowed stack reference): followed, never subtracted. Objects are
 * 8-aligned, so the bit is free. */
#define PY_REF_BORROWED 1u
/* __slots__ members of one class we visit; Python caps nothing, but a
 * class with more is damage in practice. */
#define PY_TRAVERSE_SLOTS_MAX 1024
/* Traverse functions snarl knows: one or two per builtin kind. */
#define PY_TRAVERSE_KNOWN_MAX 32

typedef struct py_walker {
    py_target *t;
    uint64_t subtype_traverse; /* 0 when unknown: no Python-class instance is traversed */
    uint64_t known_fn[PY_TRAVERSE_KNOWN_MAX];  /* tp_traverse functions snarl can follow */
    uint8_t known_kind[PY_TRAVERSE_KNOWN_MAX]; /* ... and what each visits */
    size_t nknown;
    u64map types; /* type -> 1 + index in infos */
    vec infos;    /* per-type plans (py_traverse.c) */
    vec slots;    /* int64_t __slots__ offsets, shared by the plans */
} py_walker;

/* Finds the traverse functions of the builtin types and of Python classes
 * (from classes every interpreter defines) in interp. */
err_t py_walker_init(py_walker *w, py_target *t, uint64_t interp);
void py_walker_free(py_walker *w);
/* Appends to out (uint64_t, PY_REF_BORROWED marking borrowed ones) the
 * references obj's tp_traverse visits. *rest is the base type whose own
 * traverse snarl does not know (its references are left out), 0 when all
 * were enumerated; *legacy is set when the type has a legacy finalizer
 * (tp_del), which keeps cyclic garbage alive. ERR_READ or ERR_CORRUPT when
 * the object or its type cannot be read: out may then hold a part. */
err_t py_refs(py_walker *w, uint64_t obj, uint64_t type, vec *out, uint64_t *rest, bool *legacy);
/* The managed dict or inline values of obj (PyObject_VisitManagedDict and
 * its 3.11/3.12 forms), for C types whose own traverse visits them. */
err_t py_managed_dict_refs(py_walker *w, uint64_t obj, uint64_t type, vec *out);
/* Every object slot of a thread's frame (locals and the deepest the value
 * stack can be), for roots: more than the frame holds is harmless there. */
err_t py_frame_all_slots(py_walker *w, uint64_t frame, vec *out);
uint64_t py_type_traverse(py_target *t, uint64_t type);
/* Appends ref to out unless it is NULL: a traverse's visit. */
err_t py_ref_push(vec *out, uint64_t ref);

#endif

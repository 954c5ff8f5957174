/* Generators, coroutines and async generators: the embedded frame, the
 * state, and what a suspended one awaits (each version's _PyGen_yf), plus
 * frame slots, __slots__ members, floats and closures. */
#include "py.h"

#include <string.h>

/* The value stack of one frame is at most this deep (CPython caps
 * co_stacksize far lower in practice). */
#define PY_STACK_DEPTH_MAX (1 << 16)
/* __slots__ members of one type we look through. */
#define PY_MEMBERS_MAX 256
/* Bases we follow looking for a type name or a member. */
#define PY_BASES_MAX 64
/* PyMemberDef: {name, type, offset, flags, doc}. */
#define PY_MEMBERDEF_SIZE 40
#define PY_MEMBERDEF_OFFSET 16
/* Closure cells we read of one function. */
#define PY_CLOSURE_MAX 256

static bool py_gen_type(const py_target *t, uint64_t type) {
    return type && (type == t->types.coro || type == t->types.gen || type == t->types.asyncgen);
}

/* The topmost value-stack slot of a suspended frame, or 0. On 3.15 the
 * receiver sits under a NULL pushed before SEND: skip NULL slots (bits 1). */
static err_t py_stack_top(py_target *t, uint64_t frame, uint64_t *out) {
    const py_layout *L = &t->L;
    uint64_t top_addr;
    *out = 0;
    if (L->fr_stack_is_ptr) {
        if (mem_read_u64(t->m, frame + (uint64_t)L->fr_stack, &top_addr) != ERR_OK) {
            return ERR_READ;
        }
        uint64_t base = frame + (uint64_t)L->fr_localsplus;
        if (top_addr <= base || top_addr - base > PY_STACK_DEPTH_MAX * 8u || (top_addr & 7)) {
            return ERR_CORRUPT;
        }
    } else {
        uint32_t top;
        if (mem_read_u32(t->m, frame + (uint64_t)L->fr_stack, &top) != ERR_OK) {
            return ERR_READ;
        }
        if ((int32_t)top <= 0 || (int32_t)top > PY_STACK_DEPTH_MAX) {
            return ERR_CORRUPT;
        }
        top_addr = frame + (uint64_t)L->fr_localsplus + (uint64_t)top * 8;
    }
    for (int k = 1; k <= 2; k++) {
        uint64_t bits;
        if (mem_read_u64(t->m, top_addr - 8u * (uint64_t)k, &bits) != ERR_OK) {
            return ERR_READ;
        }
        if (!L->stackref_tagged || bits != 1) {
            *out = py_stackref_obj(t, bits);
            return ERR_OK;
        }
    }
    return ERR_OK;
}

/* 3.11/3.12: an await leaves the frame on the RESUME after its last
 * instruction, with oparg >= 2 (after yield from / await). */
static bool py_resumes_after_await(py_target *t, uint64_t frame) {
    const py_layout *L = &t->L;
    uint64_t prev;
    uint16_t unit;
    if (mem_read_u64(t->m, frame + (uint64_t)L->fr_instr, &prev) != ERR_OK ||
        mem_read(t->m, prev + 2, sizeof unit, &unit) != ERR_OK) {
        return false;
    }
    int op = unit & 0xff, arg = unit >> 8;
    return (op == L->op_resume || op == L->op_resume_alt || op == L->op_instrumented_resume) &&
           arg >= 2;
}

err_t py_gen_read(py_target *t, uint64_t obj, py_gen *out) {
    const py_layout *L = &t->L;
    memset(out, 0, sizeof *out);
    out->addr = obj;
    uint64_t type;
    int8_t state;
    if (py_type_of(t, obj, &type) != ERR_OK || !py_gen_type(t, type)) {
        return ERR_CORRUPT;
    }
    if (mem_read(t->m, obj + (uint64_t)L->gen_frame_state, 1, &state) != ERR_OK) {
        return ERR_READ;
    }
    out->frame = obj + (uint64_t)L->gen_iframe;
    if (state >= L->gs_cleared) {
        out->state = PY_GEN_FINISHED;
        out->frame = 0;
    } else if (state == L->gs_executing) {
        out->state = PY_GEN_RUNNING;
    } else if (state == L->gs_created) {
        out->state = PY_GEN_CREATED;
    } else if (state == L->gs_suspended_yf || state == L->gs_suspended_yf_locked) {
        /* Before 3.13 one state covers yield and await: the bytecode tells. */
        bool awaiting =
            L->gs_suspended_yf != L->gs_suspended || py_resumes_after_await(t, out->frame);
        out->state = awaiting ? PY_GEN_AWAITING : PY_GEN_SUSPENDED;
    } else if (state == L->gs_suspended) {
        out->state = PY_GEN_SUSPENDED;
    } else {
        return ERR_CORRUPT;
    }
    if (out->state == PY_GEN_AWAITING) {
        err_t e = py_stack_top(t, out->frame, &out->awaited);
        if (e != ERR_OK) {
            return e;
        }
    }
    return ERR_OK;
}

err_t py_frame_slot(py_target *t, uint64_t frame, int i, uint64_t *value) {
    uint64_t bits;
    *value = 0;
    if (i < 0 || i > PY_STACK_DEPTH_MAX ||
        mem_read_u64(t->m, frame + (uint64_t)t->L.fr_localsplus + (uint64_t)i * 8, &bits) !=
            ERR_OK) {
        return ERR_READ;
    }
    *value = py_stackref_obj(t, bits);
    return ERR_OK;
}

err_t py_code_local_names(py_target *t, uint64_t code, vec *names) {
    uint64_t tuple;
    if (mem_read_u64(t->m, code + (uint64_t)t->L.co_localsplusnames, &tuple) != ERR_OK || !tuple) {
        return ERR_READ;
    }
    return py_tuple_items(t, tuple, names);
}

bool py_type_is(py_target *t, uint64_t type, const char *name) {
    char buf[128];
    for (int i = 0; type && i < PY_BASES_MAX; i++) {
        if (py_type_name(t, type, buf, sizeof buf) == ERR_OK && strcmp(buf, name) == 0) {
            return true;
        }
        if (mem_read_u64(t->m, type + (uint64_t)t->L.tp_base, &type) != ERR_OK) {
            return false;
        }
    }
    return false;
}

err_t py_slot(py_target *t, uint64_t obj, const char *name, uint64_t *value) {
    const py_layout *L = &t->L;
    uint64_t type;
    *value = 0;
    if (py_type_of(t, obj, &type) != ERR_OK) {
        return ERR_READ;
    }
    for (int i = 0; type && i < PY_BASES_MAX; i++) {
        uint64_t meta, basicsize, flags;
        /* A heap type's members follow it: at type + its metatype's size. */
        if (py_type_of(t, type, &meta) == ERR_OK &&
            mem_read_u64(t->m, type + (uint64_t)L->tp_flags, &flags) == ERR_OK &&
            (flags & (1ul << 9)) /* HEAPTYPE */ &&
            mem_read_u64(t->m, meta + (uint64_t)L->tp_basicsize, &basicsize) == ERR_OK &&
            basicsize < 4096) {
            for (int k = 0; k < PY_MEMBERS_MAX; k++) {
                uint8_t md[PY_MEMBERDEF_SIZE];
                char mname[64];
                if (mem_read(t->m, type + basicsize + (uint64_t)k * PY_MEMBERDEF_SIZE, sizeof md,
                             md) != ERR_OK ||
                    !rd_u64(md, 0)) {
                    break;
                }
                if (py_read_cstr(t, rd_u64(md, 0), mname, sizeof mname) == ERR_OK &&
                    strcmp(mname, name) == 0) {
                    int64_t off = (int64_t)rd_u64(md, PY_MEMBERDEF_OFFSET);
                    if (off <= 0 || off > 4096) {
                        return ERR_CORRUPT;
                    }
                    return mem_read_u64(t->m, obj + (uint64_t)off, value);
                }
            }
        }
        if (mem_read_u64(t->m, type + (uint64_t)L->tp_base, &type) != ERR_OK) {
            return ERR_READ;
        }
    }
    return ERR_OK;
}

err_t py_read_float(py_target *t, uint64_t obj, double *out) {
    uint64_t type, bits;
    if (py_type_of(t, obj, &type) != ERR_OK || type != t->types.float_ ||
        mem_read_u64(t->m, obj + (uint64_t)t->L.float_value, &bits) != ERR_OK) {
        return ERR_READ;
    }
    memcpy(out, &bits, sizeof *out);
    return ERR_OK;
}

err_t py_func_closure(py_target *t, uint64_t func, vec *cells) {
    uint64_t type, closure;
    if (py_type_of(t, func, &type) != ERR_OK || type != t->types.function ||
        mem_read_u64(t->m, func + (uint64_t)t->L.func_closure, &closure) != ERR_OK) {
        return ERR_READ;
    }
    if (!closure || closure == t->types.none) {
        return ERR_OK;
    }
    vec items;
    vec_init(&items, sizeof(uint64_t));
    err_t e = py_tuple_items(t, closure, &items);
    for (size_t i = 0; e == ERR_OK && i < items.len && i < PY_CLOSURE_MAX; i++) {
        uint64_t cell = *VEC_AT(&items, uint64_t, i), content = 0;
        mem_read_u64(t->m, cell + (uint64_t)t->L.cell_ref, &content);
        uint64_t *slot = vec_push(cells);
        if (!slot) {
            e = ERR_NOMEM;
            break;
        }
        *slot = content;
    }
    vec_free(&items);
    return e;
}

err_t py_func_closure_var(py_target *t, uint64_t func, const char *name, uint64_t *value) {
    *value = 0;
    vec cells, names;
    vec_init(&cells, sizeof(uint64_t));
    vec_init(&names, sizeof(uint64_t));
    uint64_t code;
    err_t e = py_func_closure(t, func, &cells);
    if (e == ERR_OK && (mem_read_u64(t->m, func + (uint64_t)t->L.func_code, &code) != ERR_OK ||
                        py_code_local_names(t, code, &names) != ERR_OK)) {
        e = ERR_READ;
    }
    /* Free variables close the locals-plus names, in closure order. */
    if (e == ERR_OK && cells.len <= names.len) {
        size_t first = names.len - cells.len;
        for (size_t i = 0; i < cells.len; i++) {
            char buf[64];
            if (py_read_str_buf(t, *VEC_AT(&names, uint64_t, first + i), buf, sizeof buf) ==
                    ERR_OK &&
                strcmp(buf, name) == 0) {
                *value = *VEC_AT(&cells, uint64_t, i);
                break;
            }
        }
    }
    vec_free(&cells);
    vec_free(&names);
    return e;
}

int py_frame_depth_of(const py_layout *L, uint64_t frame, uint64_t word, int nlocalsplus) {
    if (nlocalsplus < 0 || nlocalsplus > PY_STACK_DEPTH_MAX) {
        return -1;
    }
    int64_t top = L->fr_stack_is_ptr
                      ? ((int64_t)word - (int64_t)(frame + (uint64_t)L->fr_localsplus)) / 8
                      : (int64_t)(int32_t)(uint32_t)word;
    if (top < nlocalsplus || top - nlocalsplus > PY_STACK_DEPTH_MAX) {
        return -1;
    }
    return (int)(top - nlocalsplus);
}

err_t py_frame_stack_depth(py_target *t, uint64_t frame, int nlocalsplus, int *depth) {
    const py_layout *L = &t->L;
    *depth = 0;
    uint64_t word = 0;
    if (L->fr_stack_is_ptr) {
        if (mem_read_u64(t->m, frame + (uint64_t)L->fr_stack, &word) != ERR_OK) {
            return ERR_READ;
        }
    } else {
        uint32_t v;
        if (mem_read_u32(t->m, frame + (uint64_t)L->fr_stack, &v) != ERR_OK) {
            return ERR_READ;
        }
        word = v;
    }
    int d = py_frame_depth_of(L, frame, word, nlocalsplus);
    if (d < 0) {
        return ERR_CORRUPT;
    }
    *depth = d;
    return ERR_OK;
}

err_t py_frame_slot_raw(py_target *t, uint64_t frame, int i, uint64_t *bits) {
    if (i < 0 || i > 2 * PY_STACK_DEPTH_MAX) {
        return ERR_CORRUPT;
    }
    return mem_read_u64(t->m, frame + (uint64_t)t->L.fr_localsplus + (uint64_t)i * 8, bits);
}

err_t py_refcount(py_target *t, uint64_t obj, uint64_t *count, bool *immortal) {
    uint64_t v;
    if (mem_read_u64(t->m, obj + (uint64_t)t->L.ob_refcnt, &v) != ERR_OK) {
        return ERR_READ;
    }
    int64_t n = 0;
    *immortal = !py_refcount_word(t, v, &n);
    *count = (uint64_t)n;
    return ERR_OK;
}

/* What CPython's cycle collector sees of each object: the references each
 * type's tp_traverse visits (CPython 3.11-3.15, default builds), read from
 * the target. Types are told apart by their tp_traverse function; a type
 * snarl does not know contributes no reference. The reachability analysis
 * (src/aio/aio_reach.c) subtracts and follows what this file enumerates. */
#include "py.h"

#include <string.h>

/* PyTypeObject fields beyond the layout table (identical 3.11-3.15, checked
 * against the headers of every supported version). */
#define PY_TP_TRAVERSE 184
#define PY_TP_DEL 376
/* Bytes of a type object we read: up to tp_del. */
#define PY_TYPE_READ 384
/* Flags (Include/object.h, identical 3.11-3.15). */
#define PY_TPFLAGS_INLINE_VALUES (1ul << 2)
#define PY_TPFLAGS_MANAGED_DICT (1ul << 4)
#define PY_TPFLAGS_HEAPTYPE (1ul << 9)
/* A heap type's PyMemberDef array follows the type, at its metatype's
 * basicsize: {name, int type, Py_ssize_t offset, int flags, doc}. */
#define PY_MEMBERDEF_SIZE 40
#define PY_MEMBERDEF_TYPE 8
#define PY_MEMBERDEF_OFFSET 16
/* T_OBJECT_EX: the only member kind traverse_slots visits (__slots__). */
#define PY_T_OBJECT_EX 16
/* Bases followed from a class to the first one with its own traverse;
 * real hierarchies are a few deep. */
#define PY_TRAVERSE_BASES_MAX 64
/* An object size beyond which a type is damage (the largest builtin
 * instance is far smaller; slots and dicts live inside basicsize). */
#define PY_BASICSIZE_MAX (1u << 16)
/* Values of a split dict's shared keys (CPython caps them at 30). */
#define PY_SHARED_KEYS_MAX 4096
/* The managed dict pointer sits just before the GC head (3.11-3.15); 3.11
 * keeps its values pointer below it. */
#define PY_MANAGED_DICT_AT 24
#define PY_MANAGED_VALUES_311_AT 32
/* PyDictKeysObject.dk_kind: 0 general keys (visited), else str keys. */
#define PY_DICT_KEYS_KIND 10
#define PY_DICT_KEYS_GENERAL 0
/* PyDictValues (3.13+): {u8 capacity, u8 size, u8 embedded, u8 valid}. */
#define PY_VALUES_CAPACITY 0
#define PY_VALUES_EMBEDDED 2
#define PY_VALUES_VALID 3
/* Offsets of the builtin objects traversed here (headers of 3.11-3.15,
 * identical unless split by version). */
/* Bytes of a function object read: past its last object field in any
 * version (annotations; typeparams from 3.12, annotate from 3.14). */
#define PY_FUNC_FIELDS_MAX 136
#define PY_FUNC_WEAKREFLIST 96 /* not a reference */
#define PY_CFUNC_SELF 24
#define PY_CFUNC_MODULE 32
#define PY_TB_NEXT 16
#define PY_TB_FRAME 24
#define PY_EXC_FIRST 16 /* dict, args, notes, traceback, context, cause */
#define PY_EXC_FIELDS 6
#define PY_FRAMEOBJ_BACK 16
#define PY_FRAMEOBJ_FRAME 24
#define PY_FRAMEOBJ_TRACE 32
/* An owned frame lives inside its frame object, within this many bytes. */
#define PY_FRAMEOBJ_SPAN 4096
/* _PyInterpreterFrame.owner of a frame a frame object owns. */
#define PY_FRAME_OWNED_BY_FRAME_OBJECT 2

/* The traverse functions snarl follows, by what they visit. */
typedef enum py_tkind {
    PY_TK_UNKNOWN,
    PY_TK_LEAF, /* tp_traverse NULL: object itself (its subclasses keep theirs) */
    PY_TK_TUPLE,
    PY_TK_LIST,
    PY_TK_DICT,
    PY_TK_SET,
    PY_TK_DEQUE,
    PY_TK_CELL,
    PY_TK_METHOD,
    PY_TK_CFUNCTION,
    PY_TK_FUNCTION,
    PY_TK_MODULE,
    PY_TK_WEAKREF,
    PY_TK_GEN, /* generators, coroutines; async generators' gen part */
    PY_TK_FRAMEOBJ,
    PY_TK_TRACEBACK,
    PY_TK_EXCEPTION,
    PY_TK_COUNT,
} py_tkind;

typedef enum py_dictmode {
    PY_DICT_NONE,
    PY_DICT_MANAGED, /* the managed dict or values (PyObject_VisitManagedDict) */
    PY_DICT_OFFSET,  /* a dict pointer at a positive tp_dictoffset */
} py_dictmode;

/* How to traverse the instances of one type, worked out once. */
typedef struct py_plan {
    uint8_t kind;                           /* py_tkind of the traverse that does the main work */
    uint8_t dict;                           /* py_dictmode, for Python classes */
    bool subtype;                           /* a Python class: subtype_traverse's part applies */
    bool visit_type;                        /* the instance's reference to its heap type */
    bool legacy;                            /* tp_del: a legacy finalizer */
    int64_t dictoffset;                     /* PY_DICT_OFFSET */
    uint32_t slot_first, slot_count;        /* __slots__ offsets in the walker's slots */
    uint64_t rest;                          /* the base whose traverse is unknown, 0 if none */
    uint64_t flags, basicsize, cached_keys; /* of the instance's type */
} py_plan;

bool py_refcount_word(const py_target *t, uint64_t word, int64_t *count) {
    if (!t->L.refcnt_split) {
        *count = (int64_t)word;
        return true;
    }
    /* 3.12+: immortal when the low 32 bits, as an int32, are negative; 3.14
     * keeps flags in the high half, so the count is the low half. */
    uint32_t low = (uint32_t)word;
    if ((int32_t)low < 0) {
        return false;
    }
    *count = (int64_t)low;
    return true;
}

uint64_t py_type_traverse(py_target *t, uint64_t type) {
    uint64_t fn = 0;
    if (type) {
        mem_read_u64(t->m, type + PY_TP_TRAVERSE, &fn);
    }
    return fn;
}

err_t py_ref_push(vec *out, uint64_t ref) {
    if (!ref) {
        return ERR_OK;
    }
    uint64_t *slot = vec_push(out);
    if (!slot) {
        return ERR_NOMEM;
    }
    *slot = ref;
    return ERR_OK;
}

/* A _PyStackRef (3.14+) or a plain pointer, as _PyGC_VisitStackRef sees it:
 * tagged ints and NULL are skipped, bit 0 marks a borrowed reference. */
static err_t py_push_stackref(const py_target *t, vec *out, uint64_t bits) {
    if (!t->L.stackref_tagged) {
        return py_ref_push(out, bits);
    }
    if ((bits & 3) == 3 || (bits & 3) == 2 || bits == 1) {
        return ERR_OK; /* a tagged int, an error marker, NULL */
    }
    return py_ref_push(out, (bits & ~(uint64_t)3) | (bits & PY_REF_BORROWED));
}

/* Pushes the words of a local copy of an object at the given offsets. */
static err_t py_push_fields(vec *out, const uint8_t *b, size_t first, size_t end, size_t skip) {
    for (size_t off = first; off + 8 <= end; off += 8) {
        if (off == skip) {
            continue;
        }
        err_t e = py_ref_push(out, rd_u64(b, off));
        if (e != ERR_OK) {
            return e;
        }
    }
    return ERR_OK;
}

static err_t py_read_field(py_target *t, uint64_t obj, size_t off, vec *out) {
    uint64_t v;
    if (mem_read_u64(t->m, obj + off, &v) != ERR_OK) {
        return ERR_READ;
    }
    return py_ref_push(out, v);
}

static py_tkind py_kind_of(const py_walker *w, uint64_t traverse) {
    if (!traverse) {
        return PY_TK_LEAF;
    }
    for (size_t i = 0; i < w->nknown; i++) {
        if (w->known_fn[i] == traverse) {
            return (py_tkind)w->known_kind[i];
        }
    }
    return PY_TK_UNKNOWN;
}

/* The traverse of a type whose address comes from a symbol or a module. */
static void py_know(py_walker *w, py_tkind k, uint64_t type) {
    uint64_t fn = py_type_traverse(w->t, type);
    if (!fn || py_kind_of(w, fn) != PY_TK_UNKNOWN || w->nknown == PY_TRAVERSE_KNOWN_MAX) {
        return; /* absent, or already known (several types share one) */
    }
    w->known_fn[w->nknown] = fn;
    w->known_kind[w->nknown] = (uint8_t)k;
    w->nknown++;
}

static uint64_t py_module_attr(py_target *t, uint64_t interp, const char *module,
                               const char *name) {
    uint64_t mod = 0, md = 0, v = 0;
    if (py_module(t, interp, module, &mod) != ERR_OK || !mod ||
        mem_read_u64(t->m, mod + (uint64_t)t->L.mod_dict, &md) != ERR_OK || !md ||
        py_dict_get_str(t, md, name, &v) != ERR_OK) {
        return 0;
    }
    return v;
}

/* subtype_traverse is static in typeobject.c: take it from two classes
 * that importlib's bootstrap defines with a class statement in every
 * version; type_new gives every such class the same traverse. */
static uint64_t py_find_subtype_traverse(py_target *t, uint64_t interp) {
    uint64_t a = py_module_attr(t, interp, "_frozen_importlib", "ModuleSpec");
    uint64_t b = py_module_attr(t, interp, "_frozen_importlib", "BuiltinImporter");
    if (!a || !b || !(py_type_flags(t, a) & PY_TPFLAGS_HEAPTYPE) ||
        !(py_type_flags(t, b) & PY_TPFLAGS_HEAPTYPE)) {
        return 0;
    }
    uint64_t fa = py_type_traverse(t, a), fb = py_type_traverse(t, b);
    return fa && fa == fb ? fa : 0;
}

err_t py_walker_init(py_walker *w, py_target *t, uint64_t interp) {
    memset(w, 0, sizeof *w);
    w->t = t;
    vec_init(&w->infos, sizeof(py_plan));
    vec_init(&w->slots, sizeof(int64_t));
    const py_types *T = &t->types;
    py_know(w, PY_TK_TUPLE, T->tuple);
    py_know(w, PY_TK_LIST, T->list);
    py_know(w, PY_TK_DICT, T->dict);
    py_know(w, PY_TK_SET, T->set);
    py_know(w, PY_TK_CELL, T->cell);
    py_know(w, PY_TK_METHOD, T->method);
    py_know(w, PY_TK_CFUNCTION, T->cfunction);
    py_know(w, PY_TK_FUNCTION, T->function);
    py_know(w, PY_TK_MODULE, T->module);
    py_know(w, PY_TK_WEAKREF, T->weakref);
    py_know(w, PY_TK_GEN, T->gen);
    static const struct {
        const char *sym;
        py_tkind kind;
        bool pointer; /* the symbol holds a pointer to the type */
    } extra[] = {
        {"PyFrame_Type", PY_TK_FRAMEOBJ, false},
        {"PyTraceBack_Type", PY_TK_TRACEBACK, false},
        {"PyExc_BaseException", PY_TK_EXCEPTION, true},
    };
    for (size_t i = 0; i < ARRAY_LEN(extra); i++) {
        sym_hit h;
        uint64_t type = 0;
        if (t->sym && sym_lookup(t->sym, t->pyfile, extra[i].sym, &h)) {
            type = h.addr;
            if (extra[i].pointer && mem_read_u64(t->m, h.addr, &type) != ERR_OK) {
                type = 0;
            }
        }
        py_know(w, extra[i].kind, type);
    }
    /* frozenset, coroutines and async generators share their kind's work
     * under a traverse of their own in some versions. */
    py_know(w, PY_TK_SET, T->frozenset);
    py_know(w, PY_TK_GEN, T->coro);
    py_know(w, PY_TK_GEN, T->asyncgen);
    py_know(w, PY_TK_DEQUE, py_module_attr(t, interp, "collections", "deque"));
    w->subtype_traverse = py_find_subtype_traverse(t, interp);
    return ERR_OK;
}

void py_walker_free(py_walker *w) {
    u64map_free(&w->types);
    vec_free(&w->infos);
    vec_free(&w->slots);
}

/* Reads the type object's fields a plan needs. */
typedef struct py_typehead {
    uint64_t meta, size, flags, traverse, base, del, basicsize;
    int64_t dictoffset;
} py_typehead;

static err_t py_type_head(py_target *t, uint64_t type, py_typehead *h) {
    uint8_t b[PY_TYPE_READ];
    if (!type || (type & 7) || mem_read(t->m, type, sizeof b, b) != ERR_OK) {
        return ERR_READ;
    }
    h->meta = rd_u64(b, (size_t)t->L.ob_type);
    h->size = rd_u64(b, (size_t)t->L.ob_size);
    h->flags = rd_u64(b, (size_t)t->L.tp_flags);
    h->traverse = rd_u64(b, PY_TP_TRAVERSE);
    h->base = rd_u64(b, (size_t)t->L.tp_base);
    h->del = rd_u64(b, PY_TP_DEL);
    h->basicsize = rd_u64(b, (size_t)t->L.tp_basicsize);
    h->dictoffset = (int64_t)rd_u64(b, (size_t)t->L.tp_dictoffset);
    return h->basicsize > PY_BASICSIZE_MAX ? ERR_CORRUPT : ERR_OK;
}

/* traverse_slots: the T_OBJECT_EX members a class defines. */
static err_t py_plan_slots(py_walker *w, uint64_t type, const py_typehead *h, uint64_t inst_size,
                           py_plan *p) {
    py_target *t = w->t;
    uint64_t meta_size;
    if (h->size > PY_TRAVERSE_SLOTS_MAX ||
        mem_read_u64(t->m, h->meta + (uint64_t)t->L.tp_basicsize, &meta_size) != ERR_OK ||
        meta_size > PY_BASICSIZE_MAX) {
        return ERR_CORRUPT;
    }
    for (uint64_t i = 0; i < h->size; i++) {
        uint8_t md[PY_MEMBERDEF_SIZE];
        if (mem_read(t->m, type + meta_size + i * PY_MEMBERDEF_SIZE, sizeof md, md) != ERR_OK) {
            return ERR_READ;
        }
        if ((int32_t)rd_u32(md, PY_MEMBERDEF_TYPE) != PY_T_OBJECT_EX) {
            continue;
        }
        int64_t off = (int64_t)rd_u64(md, PY_MEMBERDEF_OFFSET);
        if (off < 16 || (off & 7) || (uint64_t)off + 8 > inst_size) {
            return ERR_CORRUPT; /* a slot outside the instance */
        }
        if (w->slots.len - p->slot_first >= PY_TRAVERSE_SLOTS_MAX) {
            return ERR_LIMIT;
        }
        int64_t *slot = vec_push(&w->slots);
        if (!slot) {
            return ERR_NOMEM;
        }
        *slot = off;
        p->slot_count++;
    }
    return ERR_OK;
}

/* Works out how the collector traverses instances of type (subtype_traverse
 * for Python classes, else the type's own traverse). */
static err_t py_plan_make(py_walker *w, uint64_t type, py_plan *p) {
    py_target *t = w->t;
    py_typehead h, bh;
    memset(p, 0, sizeof *p);
    err_t e = py_type_head(t, type, &h);
    if (e != ERR_OK) {
        return e;
    }
    p->legacy = h.del != 0;
    p->flags = h.flags;
    p->basicsize = h.basicsize;
    /* Values arrays before 3.13 take their keys from the type. */
    if (t->L.managed != PY_MANAGED_INLINE && (h.flags & PY_TPFLAGS_MANAGED_DICT) &&
        (h.flags & PY_TPFLAGS_HEAPTYPE)) {
        mem_read_u64(t->m, type + (uint64_t)t->L.ht_cached_keys, &p->cached_keys);
    }
    if (!w->subtype_traverse || h.traverse != w->subtype_traverse) {
        /* A tracked object always has a traverse; none means damage. */
        p->kind = h.traverse ? (uint8_t)py_kind_of(w, h.traverse) : PY_TK_UNKNOWN;
        p->rest = p->kind == PY_TK_UNKNOWN ? type : 0;
        return ERR_OK;
    }
    p->subtype = true;
    p->slot_first = (uint32_t)w->slots.len;
    uint64_t base = type;
    bh = h;
    for (int i = 0; bh.traverse == w->subtype_traverse; i++) {
        if (i == PY_TRAVERSE_BASES_MAX) {
            return ERR_LIMIT;
        }
        if (bh.size && (e = py_plan_slots(w, base, &bh, h.basicsize, p)) != ERR_OK) {
            return e;
        }
        base = bh.base;
        if ((e = py_type_head(t, base, &bh)) != ERR_OK) {
            return e;
        }
    }
    p->kind = (uint8_t)py_kind_of(w, bh.traverse);
    p->rest = p->kind == PY_TK_UNKNOWN ? base : 0;
    if (h.dictoffset != bh.dictoffset) {
        if (h.flags & PY_TPFLAGS_MANAGED_DICT) {
            p->dict = PY_DICT_MANAGED;
        } else if (h.dictoffset > 0 && (uint64_t)h.dictoffset + 8 <= h.basicsize) {
            p->dict = PY_DICT_OFFSET;
            p->dictoffset = h.dictoffset;
        }
        /* A negative offset counts from the end of a variable-size object:
         * left out (its dict then looks referenced from outside). */
    }
    p->visit_type =
        (h.flags & PY_TPFLAGS_HEAPTYPE) && (!bh.traverse || !(bh.flags & PY_TPFLAGS_HEAPTYPE));
    return ERR_OK;
}

static err_t py_plan_get(py_walker *w, uint64_t type, const py_plan **out) {
    uint64_t idx;
    if (u64map_get(&w->types, type, &idx)) {
        *out = VEC_AT(&w->infos, py_plan, idx - 1);
        return ERR_OK;
    }
    py_plan p;
    size_t slots_before = w->slots.len;
    err_t e = py_plan_make(w, type, &p);
    if (e != ERR_OK) {
        w->slots.len = slots_before;
        return e == ERR_NOMEM ? e : ERR_CORRUPT;
    }
    py_plan *slot = vec_push(&w->infos);
    if (!slot || !u64map_put(&w->types, type, w->infos.len)) {
        return ERR_NOMEM;
    }
    *slot = p;
    *out = slot;
    return ERR_OK;
}

/* A values array of n slots (split dict or instance values). */
static err_t py_values_refs(py_target *t, uint64_t array, uint64_t n, vec *out) {
    if (n > PY_SHARED_KEYS_MAX) {
        return ERR_CORRUPT;
    }
    size_t start = out->len, keep = start;
    err_t e = py_read_words(t, array, n, out);
    /* Absent attributes are NULL slots: no reference. */
    for (size_t i = start; i < out->len; i++) {
        uint64_t v = *VEC_AT(out, uint64_t, i);
        if (v) {
            *VEC_AT(out, uint64_t, keep++) = v;
        }
    }
    out->len = keep;
    return e;
}

static err_t py_keys_nentries(py_target *t, uint64_t keys, uint64_t *n) {
    if (!keys || mem_read_u64(t->m, keys + 24, n) != ERR_OK) {
        return ERR_READ;
    }
    return *n > PY_SHARED_KEYS_MAX ? ERR_CORRUPT : ERR_OK;
}

static err_t py_managed_refs(py_walker *w, uint64_t obj, const py_plan *p, vec *out) {
    py_target *t = w->t;
    uint64_t word;
    if (!(p->flags & PY_TPFLAGS_MANAGED_DICT)) {
        return ERR_OK;
    }
    if (mem_read_u64(t->m, obj - PY_MANAGED_DICT_AT, &word) != ERR_OK) {
        return ERR_READ;
    }
    uint64_t n;
    err_t e;
    switch (t->L.managed) {
    case PY_MANAGED_311: {
        /* _PyObject_VisitInstanceAttributes, then the dict pointer. */
        uint64_t values;
        if (mem_read_u64(t->m, obj - PY_MANAGED_VALUES_311_AT, &values) != ERR_OK) {
            return ERR_READ;
        }
        if (values) {
            if ((e = py_keys_nentries(t, p->cached_keys, &n)) != ERR_OK ||
                (e = py_values_refs(t, values + (uint64_t)t->L.dict_values_array, n, out)) !=
                    ERR_OK) {
                return e;
            }
        }
        return py_ref_push(out, word);
    }
    case PY_MANAGED_312:
        /* A tagged word: values - 1 with bit 0 set, or the dict. */
        if (!(word & 1)) {
            return py_ref_push(out, word);
        }
        if ((e = py_keys_nentries(t, p->cached_keys, &n)) != ERR_OK) {
            return e;
        }
        return py_values_refs(t, word + 1 + (uint64_t)t->L.dict_values_array, n, out);
    case PY_MANAGED_INLINE:
        if (p->flags & PY_TPFLAGS_INLINE_VALUES) {
            uint8_t vh[4];
            if (mem_read(t->m, obj + p->basicsize, sizeof vh, vh) != ERR_OK) {
                return ERR_READ;
            }
            if (vh[PY_VALUES_VALID]) {
                /* Valid inline values: the object visits them and not the
                 * dict (which then does not visit them either). */
                return py_values_refs(t, obj + p->basicsize + (uint64_t)t->L.dict_values_array,
                                      vh[PY_VALUES_CAPACITY], out);
            }
        }
        return py_ref_push(out, word);
    }
    return ERR_OK;
}

err_t py_managed_dict_refs(py_walker *w, uint64_t obj, uint64_t type, vec *out) {
    const py_plan *p;
    err_t e = py_plan_get(w, type, &p);
    return e != ERR_OK ? e : py_managed_refs(w, obj, p, out);
}

/* dict_traverse: values (and, for general keys, the keys); a split table
 * whose values are embedded in their owner (3.13+) is visited by the owner. */
static err_t py_dict_refs(py_target *t, uint64_t obj, vec *out) {
    uint64_t keys, values;
    if (mem_read_u64(t->m, obj + (uint64_t)t->L.dict_keys, &keys) != ERR_OK ||
        mem_read_u64(t->m, obj + (uint64_t)t->L.dict_values, &values) != ERR_OK) {
        return ERR_READ;
    }
    if (values && t->L.managed == PY_MANAGED_INLINE) {
        uint8_t embedded;
        if (mem_read(t->m, values + PY_VALUES_EMBEDDED, 1, &embedded) != ERR_OK) {
            return ERR_READ;
        }
        if (embedded) {
            return ERR_OK;
        }
    }
    uint8_t kind;
    size_t first = out->len;
    if (!keys || mem_read(t->m, keys + PY_DICT_KEYS_KIND, 1, &kind) != ERR_OK) {
        return ERR_READ;
    }
    err_t e = py_keys_values_items(t, keys, values, out);
    if (e == ERR_OK && kind != PY_DICT_KEYS_GENERAL) {
        /* str keys (only exact str objects) are not visited: keep values. */
        size_t n = 0;
        for (size_t i = first + 1; i < out->len; i += 2) {
            *VEC_AT(out, uint64_t, first + n++) = *VEC_AT(out, uint64_t, i);
        }
        out->len = first + n;
    }
    return e;
}

/* _PyFrame_Traverse: the frame object, locals, function and code, then the
 * locals and value stack up to the stack top. */
static err_t py_iframe_refs(py_target *t, uint64_t frame, bool executing, bool all_slots,
                            vec *out) {
    const py_layout *L = &t->L;
    uint8_t b[256];
    if (L->fr_size > sizeof b || (frame & 7) || mem_read(t->m, frame, L->fr_size, b) != ERR_OK) {
        return ERR_READ;
    }
    err_t e = py_ref_push(out, rd_u64(b, (size_t)L->fr_frame_obj));
    if (e == ERR_OK) {
        e = py_ref_push(out, rd_u64(b, (size_t)L->fr_locals));
    }
    if (e == ERR_OK) {
        e = py_push_stackref(t, out, rd_u64(b, (size_t)L->fr_func));
    }
    if (e == ERR_OK) {
        e = py_push_stackref(t, out, rd_u64(b, (size_t)L->fr_code));
    }
    if (e != ERR_OK || executing) {
        return e;
    }
    uint64_t base = frame + (uint64_t)L->fr_localsplus, n;
    if (all_slots) {
        /* Roots: every slot the code's frame can use, stale ones included. */
        uint64_t code = py_stackref_obj(t, rd_u64(b, (size_t)L->fr_code));
        uint32_t nlocals = 0, stacksize = 0;
        if (!code || mem_read_u32(t->m, code + (uint64_t)L->co_nlocalsplus, &nlocals) != ERR_OK ||
            mem_read_u32(t->m, code + (uint64_t)L->co_stacksize, &stacksize) != ERR_OK) {
            return ERR_READ;
        }
        n = (uint64_t)nlocals + stacksize;
        e = py_ref_push(out, rd_u64(b, (size_t)L->fr_globals));
        if (e != ERR_OK) {
            return e;
        }
    } else if (L->fr_stack_is_ptr) {
        uint64_t top = rd_u64(b, (size_t)L->fr_stack);
        if (top < base || (top - base) & 7) {
            return ERR_CORRUPT;
        }
        n = (top - base) / 8;
    } else {
        int32_t top = (int32_t)rd_u32(b, (size_t)L->fr_stack);
        if (top < 0) {
            return ERR_CORRUPT;
        }
        n = (uint64_t)top;
    }
    if (n > PY_CONTAINER_MAX) {
        return ERR_CORRUPT;
    }
    uint64_t slots[256];
    for (uint64_t done = 0; done < n;) {
        size_t take = n - done > ARRAY_LEN(slots) ? ARRAY_LEN(slots) : (size_t)(n - done);
        if (mem_read(t->m, base + done * 8, take * 8, slots) != ERR_OK) {
            return ERR_READ;
        }
        for (size_t i = 0; i < take; i++) {
            if ((e = py_push_stackref(t, out, slots[i])) != ERR_OK) {
                return e;
            }
        }
        done += take;
    }
    return ERR_OK;
}

err_t py_frame_all_slots(py_walker *w, uint64_t frame, vec *out) {
    return py_iframe_refs(w->t, frame, false, true, out);
}

/* gen_traverse: name, qualname (and 3.11's code), the frame unless the
 * generator is cleared, the exception state. */
static err_t py_gen_refs(py_target *t, uint64_t obj, vec *out) {
    const py_layout *L = &t->L;
    uint8_t b[96];
    if (mem_read(t->m, obj, sizeof b, b) != ERR_OK) {
        return ERR_READ;
    }
    size_t name = (size_t)L->gen_name;
    err_t e = py_ref_push(out, rd_u64(b, name));
    if (e == ERR_OK) {
        e = py_ref_push(out, rd_u64(b, name + 8)); /* qualname */
    }
    if (e == ERR_OK && L->gen_code != PY_NONE) {
        e = py_ref_push(out, rd_u64(b, (size_t)L->gen_code));
    }
    if (e == ERR_OK) {
        e = py_ref_push(out, rd_u64(b, (size_t)L->gen_exc_state));
    }
    if (e != ERR_OK || (size_t)L->gen_frame_state >= sizeof b) {
        return e;
    }
    int8_t state = (int8_t)b[L->gen_frame_state];
    uint64_t frame = obj + (uint64_t)L->gen_iframe;
    if (state >= L->gs_cleared) {
        if (L->stackref_tagged) {
            /* 3.14+ keeps the code alive through a cleared frame too. */
            uint64_t bits;
            if (mem_read_u64(t->m, frame + (uint64_t)L->fr_code, &bits) != ERR_OK) {
                return ERR_READ;
            }
            return py_push_stackref(t, out, bits);
        }
        return ERR_OK;
    }
    return py_iframe_refs(t, frame, state == L->gs_executing, false, out);
}

/* frame_traverse: f_back, f_trace, and the frame the object owns. */
static err_t py_frameobj_refs(py_target *t, uint64_t obj, vec *out) {
    uint8_t b[40];
    if (mem_read(t->m, obj, sizeof b, b) != ERR_OK) {
        return ERR_READ;
    }
    err_t e = py_ref_push(out, rd_u64(b, PY_FRAMEOBJ_BACK));
    if (e == ERR_OK) {
        e = py_ref_push(out, rd_u64(b, PY_FRAMEOBJ_TRACE));
    }
    uint64_t frame = rd_u64(b, PY_FRAMEOBJ_FRAME);
    uint8_t owner;
    if (e != ERR_OK || !frame) {
        return e;
    }
    if (mem_read(t->m, frame + (uint64_t)t->L.fr_owner, 1, &owner) != ERR_OK) {
        return ERR_READ;
    }
    if (owner != PY_FRAME_OWNED_BY_FRAME_OBJECT) {
        return ERR_OK;
    }
    if (frame < obj || frame - obj > PY_FRAMEOBJ_SPAN) {
        return ERR_CORRUPT;
    }
    return py_iframe_refs(t, frame, false, false, out);
}

static err_t py_kind_refs(py_walker *w, py_tkind kind, uint64_t obj, uint64_t type, vec *out) {
    py_target *t = w->t;
    const py_layout *L = &t->L;
    uint8_t b[PY_FUNC_FIELDS_MAX];
    size_t func_end = (size_t)L->func_fields_end;
    switch (kind) {
    case PY_TK_UNKNOWN:
    case PY_TK_LEAF:
    case PY_TK_COUNT:
        return ERR_OK;
    case PY_TK_TUPLE:
        return py_tuple_items(t, obj, out);
    case PY_TK_LIST:
        return py_list_items(t, obj, out);
    case PY_TK_DICT:
        return py_dict_refs(t, obj, out);
    case PY_TK_SET:
        return py_set_items(t, obj, out);
    case PY_TK_DEQUE: {
        /* 3.12 made deque a heap type, whose instances visit it. */
        err_t e = L->heap_c_types ? py_ref_push(out, type) : ERR_OK;
        return e == ERR_OK ? py_deque_items(t, obj, out) : e;
    }
    case PY_TK_CELL:
        return py_read_field(t, obj, (size_t)L->cell_ref, out);
    case PY_TK_MODULE:
        return py_read_field(t, obj, (size_t)L->mod_dict, out);
    case PY_TK_WEAKREF:
        /* The callback only: the referent is what a weak reference is not. */
        return py_read_field(t, obj, (size_t)L->wr_callback, out);
    case PY_TK_METHOD: {
        err_t e = py_read_field(t, obj, (size_t)L->meth_func, out);
        return e == ERR_OK ? py_read_field(t, obj, (size_t)L->meth_self, out) : e;
    }
    case PY_TK_CFUNCTION: {
        /* m_self and m_module; a PyCMethod's class is left out. */
        err_t e = py_read_field(t, obj, PY_CFUNC_SELF, out);
        return e == ERR_OK ? py_read_field(t, obj, PY_CFUNC_MODULE, out) : e;
    }
    case PY_TK_FUNCTION:
        if (func_end > sizeof b || mem_read(t->m, obj, func_end, b) != ERR_OK) {
            return ERR_READ;
        }
        return py_push_fields(out, b, 16, func_end, PY_FUNC_WEAKREFLIST);
    case PY_TK_TRACEBACK:
        if (mem_read(t->m, obj, PY_TB_FRAME + 8, b) != ERR_OK) {
            return ERR_READ;
        }
        return py_push_fields(out, b, PY_TB_NEXT, PY_TB_FRAME + 8, 0);
    case PY_TK_EXCEPTION:
        if (mem_read(t->m, obj, PY_EXC_FIRST + PY_EXC_FIELDS * 8, b) != ERR_OK) {
            return ERR_READ;
        }
        return py_push_fields(out, b, PY_EXC_FIRST, PY_EXC_FIRST + PY_EXC_FIELDS * 8, 0);
    case PY_TK_GEN:
        return py_gen_refs(t, obj, out);
    case PY_TK_FRAMEOBJ:
        return py_frameobj_refs(t, obj, out);
    }
    return ERR_OK;
}

err_t py_refs(py_walker *w, uint64_t obj, uint64_t type, vec *out, uint64_t *rest, bool *legacy) {
    py_target *t = w->t;
    const py_plan *p;
    *rest = 0;
    *legacy = false;
    err_t e = py_plan_get(w, type, &p);
    if (e != ERR_OK) {
        return e;
    }
    /* Copy: the plan vector may move while later types are planned. */
    py_plan plan = *p;
    *legacy = plan.legacy;
    *rest = plan.rest;
    if (plan.subtype) {
        for (uint32_t i = 0; i < plan.slot_count; i++) {
            int64_t off = *VEC_AT(&w->slots, int64_t, plan.slot_first + i);
            if ((e = py_read_field(t, obj, (size_t)off, out)) != ERR_OK) {
                return e;
            }
        }
        if (plan.dict == PY_DICT_MANAGED) {
            e = py_managed_refs(w, obj, &plan, out);
        } else if (plan.dict == PY_DICT_OFFSET) {
            e = py_read_field(t, obj, (size_t)plan.dictoffset, out);
        }
        if (e == ERR_OK && plan.visit_type) {
            e = py_ref_push(out, type);
        }
        if (e != ERR_OK) {
            return e;
        }
    }
    return py_kind_refs(w, (py_tkind)plan.kind, obj, type, out);
}

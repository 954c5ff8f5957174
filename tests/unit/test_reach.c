/* Weak reachability's subtract-and-mark core on hand-built heaps: lists in
 * cycles on a synthetic interpreter's GC lists, with the reference counts
 * the test chooses, and the pending "task" the verdict is about. */
#include <stdlib.h>
#include <string.h>

#include "../../src/aio/aio_int.h"
#include "../../src/ana/ana.h"
#include "fixture.h"
#include "unit.h"

/* Objects a test heap holds at most. */
#define RH_OBJECTS_MAX 8
/* Fake traverse function addresses: the list's, a type snarl does not know,
 * and Python classes' (subtype_traverse). */
#define RH_LIST_TRAVERSE 0x51000ull
#define RH_OPAQUE_TRAVERSE 0x52000ull
#define RH_SUBTYPE_TRAVERSE 0x53000ull
/* PyTypeObject.tp_traverse (3.11-3.15). */
#define RH_TP_TRAVERSE 184
/* The interpreter state: large enough for every version's gc and modules
 * offsets. */
#define RH_INTERP_SIZE 8192
#define RH_GEN_SIZE 24
#define RH_HEAPTYPE (1ull << 9)
/* The test heap is one buffer mapped here at the end of the build (the
 * image keeps the first copy of an address, so nothing is written twice),
 * away from the fixture's own objects. */
#define RH_ARENA_BASE 0x30000000ull
#define RH_ARENA_SIZE (64u << 10)
#define RH_TYPE_SIZE 1024
#define RH_OBJ_SIZE 40

typedef struct rh {
    fx f;
    uint8_t *arena;
    uint64_t used;
    uint64_t interp, list_type, opaque_type;
    uint64_t heads[4]; /* three generations, then the permanent one */
    uint64_t objs[RH_OBJECTS_MAX];
    int gen[RH_OBJECTS_MAX];
    size_t n;
    bool linked; /* the lists are built: rh_run leaves them as they are */
} rh;

static uint64_t rh_alloc(rh *h, uint64_t size) {
    uint64_t at = (h->used + 15) & ~(uint64_t)15;
    if (!CHECK(at + size <= RH_ARENA_SIZE)) {
        return RH_ARENA_BASE;
    }
    h->used = at + size;
    return RH_ARENA_BASE + at;
}

static void rh_w64(rh *h, uint64_t addr, uint64_t v) {
    if (CHECK(addr >= RH_ARENA_BASE && addr + 8 <= RH_ARENA_BASE + RH_ARENA_SIZE)) {
        fx_w64(h->arena, (size_t)(addr - RH_ARENA_BASE), v);
    }
}

static uint64_t rh_type(rh *h, uint64_t flags, uint64_t traverse) {
    const py_layout *L = &h->f.t.L;
    uint64_t type = rh_alloc(h, RH_TYPE_SIZE);
    rh_w64(h, type + (uint64_t)L->ob_refcnt, 1);
    rh_w64(h, type + (uint64_t)L->tp_flags, flags);
    rh_w64(h, type + (uint64_t)L->tp_basicsize, RH_OBJ_SIZE);
    rh_w64(h, type + RH_TP_TRAVERSE, traverse);
    return type;
}

/* sys.modules with _frozen_importlib's two classes, so the walker finds
 * subtype_traverse as it does in a real interpreter. */
static uint64_t rh_modules(rh *h) {
    fx *f = &h->f;
    uint64_t spec = rh_type(h, RH_HEAPTYPE, RH_SUBTYPE_TRAVERSE);
    uint64_t importer = rh_type(h, RH_HEAPTYPE, RH_SUBTYPE_TRAVERSE);
    uint64_t names[] = {fx_str(f, "ModuleSpec"), fx_str(f, "BuiltinImporter")};
    uint64_t types[] = {spec, importer};
    uint64_t md = fx_dict(f, fx_keys(f, 1, names, types, 2), 0);
    uint8_t mod[40] = {0};
    fx_w64(mod, (size_t)f->t.L.ob_refcnt, 1);
    fx_w64(mod, (size_t)f->t.L.ob_type, fx_type(f, 0, sizeof mod));
    fx_w64(mod, (size_t)f->t.L.mod_dict, md);
    uint64_t module = fx_put(f, mod, sizeof mod);
    uint64_t key[] = {fx_str(f, "_frozen_importlib")}, val[] = {module};
    return fx_dict(f, fx_keys(f, 1, key, val, 1), 0);
}

static bool rh_open(rh *h, int minor) {
    memset(h, 0, sizeof *h);
    if (!fx_open(&h->f, minor) || !CHECK((h->arena = calloc(1, RH_ARENA_SIZE)) != NULL)) {
        return false;
    }
    const py_layout *L = &h->f.t.L;
    h->interp = rh_alloc(h, RH_INTERP_SIZE);
    uint64_t gens = rh_alloc(h, 3 * RH_GEN_SIZE); /* generations[3], contiguous */
    for (int g = 0; g < 3; g++) {
        h->heads[g] = gens + (uint64_t)g * RH_GEN_SIZE;
    }
    uint64_t gc = h->interp + (uint64_t)L->is_gc;
    h->heads[3] = gc + (uint64_t)L->gc_permanent;
    rh_w64(h, gc + (uint64_t)L->gc_generation0, h->heads[0]);
    rh_w64(h, h->interp + (uint64_t)L->is_modules, rh_modules(h));
    h->list_type = rh_type(h, 0, RH_LIST_TRAVERSE);
    h->f.t.types.list = h->list_type;
    h->opaque_type = rh_type(h, 0, RH_OPAQUE_TRAVERSE);
    return true;
}

/* A tracked object of type with its count, in generation gen. */
static uint64_t rh_obj(rh *h, uint64_t type, int64_t refcnt, int gen) {
    const py_layout *L = &h->f.t.L;
    uint64_t obj = rh_alloc(h, 16 + RH_OBJ_SIZE) + 16; /* PyGC_Head, then the object */
    rh_w64(h, obj + (uint64_t)L->ob_refcnt, (uint64_t)refcnt);
    rh_w64(h, obj + (uint64_t)L->ob_type, type);
    if (CHECK(h->n < RH_OBJECTS_MAX)) {
        h->objs[h->n] = obj;
        h->gen[h->n++] = gen;
    }
    return obj;
}

static uint64_t rh_list(rh *h, int64_t refcnt) {
    return rh_obj(h, h->list_type, refcnt, 0);
}

/* Sets a list's items. */
static void rh_items(rh *h, uint64_t list, const uint64_t *items, size_t n) {
    const py_layout *L = &h->f.t.L;
    uint64_t array = rh_alloc(h, n * 8);
    for (size_t i = 0; i < n; i++) {
        rh_w64(h, array + i * 8, items[i]);
    }
    rh_w64(h, list + (uint64_t)L->ob_size, n);
    rh_w64(h, list + (uint64_t)L->list_items, array);
    rh_w64(h, list + (uint64_t)L->list_allocated, n);
}

/* Links every object into its generation's circular list. */
static void rh_link(rh *h) {
    h->linked = true;
    for (int g = 0; g < 4; g++) {
        uint64_t prev = h->heads[g];
        for (size_t i = 0; i < h->n; i++) {
            if (h->gen[i] != (g == 3 ? PY_GC_PERMANENT : g)) {
                continue;
            }
            uint64_t gch = h->objs[i] - 16;
            rh_w64(h, prev, gch);
            prev = gch;
        }
        rh_w64(h, prev, h->heads[g]);
    }
}

/* Maps the heap and runs the analysis with one pending task whose id is
 * task; returns its verdict. */
/* What the last rh_run's analysis said of the graph. */
static struct {
    bool incomplete;
    uint64_t objects, roots;
    const char *doubt;
} rh_last;

static bool rh_run(rh *h, uint64_t task, aio_model *m) {
    if (!h->linked) {
        rh_link(h);
    }
    fx_put_at(&h->f, RH_ARENA_BASE, h->arena, RH_ARENA_SIZE);
    memset(m, 0, sizeof *m);
    vec_init(&m->threads, sizeof(aio_thread));
    vec_init(&m->tasks, sizeof(aio_task));
    vec_init(&m->warnings, sizeof(char *));
    aio_task *t = vec_push(&m->tasks);
    if (!CHECK(t != NULL)) {
        return false;
    }
    t->id = task;
    t->state = AIO_STATE_PENDING;
    vec_init(&t->frames, sizeof(aio_frame));
    vec_init(&t->awaits, sizeof(uint64_t));
    vec_init(&t->awaited_by, sizeof(uint64_t));
    aio_options opt = {.tasks = true, .reachability = true};
    aio_ctx c;
    memset(&c, 0, sizeof c);
    c.t = &h->f.t;
    c.model = m;
    c.opt = &opt;
    c.interp = h->interp;
    CHECK_ERR(aio_reachability(&c), ERR_OK);
    /* The verdict is the analysis layer's, over the graph just read. */
    ana_result res;
    memset(&rh_last, 0, sizeof rh_last);
    rh_last.objects = m->heap.objs.len;
    if (!CHECK_ERR(ana_diagnose(m, &res), ERR_OK)) {
        return false;
    }
    rh_last.incomplete = !res.weak_known;
    rh_last.roots = res.reach_roots;
    rh_last.doubt = res.reach_doubt;
    bool weak = ana_task_verdict(&res, 0) & ANA_TASK_WEAK;
    ana_result_free(&res);
    return weak;
}

static void rh_close(rh *h, aio_model *m) {
    aio_model_free(m);
    fx_close(&h->f);
    free(h->arena);
}

TEST(reach_two_lists_in_a_cycle_with_no_outside_reference_are_unreachable) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        rh h;
        aio_model m;
        if (!CHECK(rh_open(&h, fx_minors[v]))) {
            return;
        }
        uint64_t a = rh_list(&h, 1), b = rh_list(&h, 1);
        rh_items(&h, a, &b, 1);
        rh_items(&h, b, &a, 1);
        CHECK(rh_run(&h, a, &m));
        CHECK(!rh_last.incomplete);
        CHECK_EQ(rh_last.objects, 2);
        CHECK_EQ(rh_last.roots, 0);
        CHECK_EQ(m.warnings.len, 0);
        rh_close(&h, &m);
    }
}

TEST(reach_the_same_cycle_with_one_outside_reference_is_alive) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        rh h;
        aio_model m;
        if (!CHECK(rh_open(&h, fx_minors[v]))) {
            return;
        }
        /* b has a second reference no tracked object accounts for (a C
         * global, a thread's frame...): it is a root, and a with it. */
        uint64_t a = rh_list(&h, 1), b = rh_list(&h, 2);
        rh_items(&h, a, &b, 1);
        rh_items(&h, b, &a, 1);
        CHECK(!rh_run(&h, a, &m));
        CHECK(!rh_last.incomplete);
        CHECK_EQ(rh_last.roots, 1);
        rh_close(&h, &m);
    }
}

TEST(reach_an_object_of_unknown_type_keeps_what_it_references_alive) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        rh h;
        aio_model m;
        if (!CHECK(rh_open(&h, fx_minors[v]))) {
            return;
        }
        /* a -> o -> a, but snarl cannot see o's reference to a: a keeps
         * its count and is a root. */
        uint64_t a = rh_list(&h, 1);
        uint64_t o = rh_obj(&h, h.opaque_type, 1, 1);
        rh_items(&h, a, &o, 1);
        rh_w64(&h, o + 16, a);
        CHECK(!rh_run(&h, a, &m));
        CHECK(!rh_last.incomplete);
        rh_close(&h, &m);
    }
}

TEST(reach_a_cycle_reached_from_a_root_list_is_alive_and_one_beside_it_is_not) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        rh h;
        aio_model m;
        if (!CHECK(rh_open(&h, fx_minors[v]))) {
            return;
        }
        uint64_t root = rh_list(&h, 1), a = rh_list(&h, 2), b = rh_list(&h, 1);
        uint64_t c = rh_list(&h, 1), d = rh_list(&h, 1);
        rh_items(&h, root, &a, 1);
        rh_items(&h, a, &b, 1);
        rh_items(&h, b, &a, 1);
        rh_items(&h, c, &d, 1);
        rh_items(&h, d, &c, 1);
        /* root's one reference comes from outside: it is the root. */
        CHECK(!rh_run(&h, b, &m));
        rh_close(&h, &m);
        if (!CHECK(rh_open(&h, fx_minors[v]))) {
            return;
        }
        root = rh_list(&h, 1);
        a = rh_list(&h, 2);
        b = rh_list(&h, 1);
        c = rh_list(&h, 1);
        d = rh_list(&h, 1);
        rh_items(&h, root, &a, 1);
        rh_items(&h, a, &b, 1);
        rh_items(&h, b, &a, 1);
        rh_items(&h, c, &d, 1);
        rh_items(&h, d, &c, 1);
        CHECK(rh_run(&h, d, &m));
        CHECK_EQ(rh_last.roots, 1);
        rh_close(&h, &m);
    }
}

TEST(reach_counts_that_do_not_add_up_flag_nothing_and_say_so) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        rh h;
        aio_model m;
        if (!CHECK(rh_open(&h, fx_minors[v]))) {
            return;
        }
        /* b holds a twice but a claims one reference: the heap snarl read
         * is not the one CPython would see. */
        uint64_t a = rh_list(&h, 1), b = rh_list(&h, 1);
        uint64_t twice[] = {a, a};
        rh_items(&h, a, &b, 1);
        rh_items(&h, b, twice, 2);
        CHECK(!rh_run(&h, a, &m));
        CHECK(rh_last.incomplete);
        CHECK(rh_last.doubt != NULL);
        rh_close(&h, &m);
    }
}

TEST(reach_a_broken_gc_list_flags_nothing) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        rh h;
        aio_model m;
        if (!CHECK(rh_open(&h, fx_minors[v]))) {
            return;
        }
        uint64_t a = rh_list(&h, 1), b = rh_list(&h, 1);
        rh_items(&h, a, &b, 1);
        rh_items(&h, b, &a, 1);
        rh_link(&h);
        /* b's next pointer leads into unmapped memory. */
        rh_w64(&h, b - 16, 0x6660000000ull);
        CHECK(!rh_run(&h, a, &m));
        CHECK(rh_last.incomplete);
        rh_close(&h, &m);
    }
}

TEST(reach_a_gc_list_that_loops_into_itself_ends_at_once_and_flags_nothing) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        rh h;
        aio_model m;
        if (!CHECK(rh_open(&h, fx_minors[v]))) {
            return;
        }
        uint64_t a = rh_list(&h, 1), b = rh_list(&h, 1);
        rh_items(&h, a, &b, 1);
        rh_items(&h, b, &a, 1);
        rh_link(&h);
        /* b leads back to a instead of to the head, as a torn read of a
         * list being relinked can show: without a loop check the walk would
         * spin through its whole budget of PY_GC_OBJECTS_MAX objects. */
        rh_w64(&h, b - 16, a - 16);
        CHECK(!rh_run(&h, a, &m));
        CHECK(rh_last.incomplete);
        CHECK(rh_last.objects < 16);
        rh_close(&h, &m);
    }
}

TEST(reach_frozen_and_immortal_objects_are_roots) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        rh h;
        aio_model m;
        if (!CHECK(rh_open(&h, fx_minors[v]))) {
            return;
        }
        /* A cycle through an object of gc.freeze()'s permanent generation,
         * which the collector never examines. */
        uint64_t a = rh_list(&h, 1);
        uint64_t p = rh_obj(&h, h.list_type, 1, PY_GC_PERMANENT);
        rh_items(&h, a, &p, 1);
        rh_items(&h, p, &a, 1);
        CHECK(!rh_run(&h, a, &m));
        CHECK(!rh_last.incomplete);
        rh_close(&h, &m);
        if (fx_minors[v] < 12 || !CHECK(rh_open(&h, fx_minors[v]))) {
            continue;
        }
        /* 3.12+: an immortal object (low 32 bits negative) in the cycle. */
        a = rh_list(&h, 1);
        uint64_t i = rh_list(&h, 0xFFFFFFFFll);
        rh_items(&h, a, &i, 1);
        rh_items(&h, i, &a, 1);
        CHECK(!rh_run(&h, a, &m));
        CHECK(!rh_last.incomplete);
        rh_close(&h, &m);
    }
}

TEST(reach_objects_out_of_address_order_and_on_several_pages_keep_their_flags) {
    for (size_t v = 0; v < ARRAY_LEN(fx_minors); v++) {
        rh h;
        aio_model m;
        if (!CHECK(rh_open(&h, fx_minors[v]))) {
            return;
        }
        /* The frozen object has the lowest address but comes last on the
         * lists, so the heap's sort moves it to the front: its flag must go
         * with it, or b would become the frozen root that keeps a alive. */
        uint64_t p = rh_obj(&h, h.list_type, 1, PY_GC_PERMANENT);
        rh_alloc(&h, 5000); /* the cycle starts on another page */
        uint64_t b = rh_obj(&h, h.list_type, 1, 2);
        rh_alloc(&h, 9000);
        uint64_t a = rh_list(&h, 1);
        rh_items(&h, a, &b, 1);
        rh_items(&h, b, &a, 1);
        CHECK(rh_run(&h, a, &m));
        CHECK(!rh_last.incomplete);
        CHECK_EQ(rh_last.objects, 3);
        CHECK(aio_heap_find(&m.heap, p) != AIO_HEAP_NONE);
        CHECK(aio_heap_find(&m.heap, a) != AIO_HEAP_NONE);
        CHECK(aio_heap_find(&m.heap, b) != AIO_HEAP_NONE);
        CHECK_EQ(aio_heap_find(&m.heap, a + 8), AIO_HEAP_NONE);
        CHECK_EQ(aio_heap_find(&m.heap, p - 16), AIO_HEAP_NONE);
        rh_close(&h, &m);
    }
}

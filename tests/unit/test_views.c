/* The views over hand-built models, their bytes captured by a sink into an
 * sbuf: the tasks table and its grouping, the await tree (cycles, shared
 * children, 10,000 deep), DOT, Mermaid, JSON and the stacks splice. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../src/out/out.h"
#include "unit.h"

/* A model under construction and the strings it owns. */
typedef struct mb {
    aio_model m;
    vec strs; /* char *: freed with the model */
} mb;

static void mb_init(mb *b) {
    memset(b, 0, sizeof *b);
    vec_init(&b->m.threads, sizeof(aio_thread));
    vec_init(&b->m.tasks, sizeof(aio_task));
    vec_init(&b->m.loops, sizeof(aio_loop));
    vec_init(&b->m.resources, sizeof(aio_resource));
    vec_init(&b->m.warnings, sizeof(char *));
    vec_init(&b->strs, sizeof(char *));
    b->m.target.kind = "live";
    b->m.target.pid = 4242;
    snprintf(b->m.target.python, sizeof b->m.target.python, "3.14.0");
    b->m.tasks_found_by = "registry";
}

static char *mb_str(mb *b, const char *s) {
    char *d = s ? util_strdup(s) : NULL;
    char **slot = d ? vec_push(&b->strs) : NULL;
    if (slot) {
        *slot = d;
    }
    return d;
}

static void mb_id(vec *v, uint64_t id) {
    if (!v->elem) {
        vec_init(v, sizeof(uint64_t));
    }
    uint64_t *p = vec_push(v);
    if (p) {
        *p = id;
    }
}

static aio_task *mb_find(mb *b, uint64_t id) {
    for (size_t i = 0; i < b->m.tasks.len; i++) {
        if (VEC_AT(&b->m.tasks, aio_task, i)->id == id) {
            return VEC_AT(&b->m.tasks, aio_task, i);
        }
    }
    return NULL;
}

static aio_resource *mb_find_res(mb *b, uint64_t id) {
    for (size_t i = 0; i < b->m.resources.len; i++) {
        if (VEC_AT(&b->m.resources, aio_resource, i)->id == id) {
            return VEC_AT(&b->m.resources, aio_resource, i);
        }
    }
    return NULL;
}

/* The pointer lives until the next mb_task. */
static aio_task *mb_task(mb *b, uint64_t id, const char *name, aio_state state) {
    aio_task *t = vec_push(&b->m.tasks);
    if (!t) {
        return NULL;
    }
    t->id = id;
    t->name = mb_str(b, name);
    t->type = "_asyncio.Task";
    t->c_task = true;
    t->state = state;
    t->loop = 0x9000;
    t->found_by = "registry";
    vec_init(&t->frames, sizeof(aio_frame));
    vec_init(&t->awaits, sizeof(uint64_t));
    vec_init(&t->awaited_by, sizeof(uint64_t));
    return t;
}

/* Frames are added innermost first, as the model keeps them. */
static aio_frame *mb_frame(mb *b, vec *frames, const char *fn, const char *file, int line) {
    aio_frame *f = vec_push(frames);
    aio_name *n = f ? util_alloc(sizeof *n) : NULL;
    char **slot = n ? vec_push(&b->strs) : NULL;
    if (slot) {
        *slot = (char *)n;
        n->function = mb_str(b, fn);
        n->file = mb_str(b, file);
        n->nlocalsplus = -1;
        f->name = n;
        f->line = line;
    }
    return f;
}

static void mb_task_frame(mb *b, uint64_t task, const char *fn, const char *file, int line) {
    aio_task *t = mb_find(b, task);
    if (t) {
        mb_frame(b, &t->frames, fn, file, line);
    }
}

static aio_resource *mb_res(mb *b, uint64_t id, aio_kind kind, const char *type) {
    aio_resource *r = vec_push(&b->m.resources);
    if (r) {
        r->id = id;
        r->kind = kind;
        snprintf(r->type, sizeof r->type, "%s", type);
        vec_init(&r->waiters, sizeof(uint64_t));
        vec_init(&r->members, sizeof(uint64_t));
    }
    return r;
}

/* waiter waits on `on` (a task or a resource); a task on the other end, or
 * the members of a gather-like resource, learn who awaits them. */
static void mb_wait(mb *b, uint64_t waiter, aio_kind kind, uint64_t on) {
    aio_task *t = mb_find(b, waiter);
    if (!t) {
        return;
    }
    t->waits_kind = kind;
    t->waits_on = on;
    mb_id(&t->awaits, on);
    aio_task *other = mb_find(b, on);
    if (other) {
        mb_id(&other->awaited_by, waiter);
    }
    aio_resource *r = mb_find_res(b, on);
    if (r) {
        mb_id(&r->waiters, waiter);
        for (size_t k = 0; k < r->members.len; k++) {
            aio_task *mt = mb_find(b, *VEC_AT(&r->members, uint64_t, k));
            if (mt) {
                mb_id(&mt->awaited_by, waiter);
            }
        }
    }
}

/* The builder owns the strings and names; a frame owns only its extra. */
static void mb_frame_free(aio_frame *f) {
    if (f->extra) {
        vec_free(&f->extra->locals);
        util_free(f->extra);
    }
}

static void mb_free(mb *b) {
    for (size_t i = 0; i < b->m.tasks.len; i++) {
        aio_task *t = VEC_AT(&b->m.tasks, aio_task, i);
        for (size_t k = 0; k < t->frames.len; k++) {
            mb_frame_free(VEC_AT(&t->frames, aio_frame, k));
        }
        vec_free(&t->frames);
        vec_free(&t->awaits);
        vec_free(&t->awaited_by);
        if (t->awaited_by_interp) {
            vec_free(t->awaited_by_interp);
            util_free(t->awaited_by_interp);
        }
        util_free(t->request);
    }
    for (size_t i = 0; i < b->m.resources.len; i++) {
        aio_resource *r = VEC_AT(&b->m.resources, aio_resource, i);
        vec_free(&r->waiters);
        vec_free(&r->members);
    }
    for (size_t i = 0; i < b->m.threads.len; i++) {
        aio_thread *th = VEC_AT(&b->m.threads, aio_thread, i);
        for (size_t k = 0; k < th->frames.len; k++) {
            mb_frame_free(VEC_AT(&th->frames, aio_frame, k));
        }
        vec_free(&th->frames);
    }
    vec_free(&b->m.threads);
    vec_free(&b->m.tasks);
    vec_free(&b->m.loops);
    vec_free(&b->m.resources);
    vec_free(&b->m.warnings);
    for (size_t i = 0; i < b->strs.len; i++) {
        util_free(*VEC_AT(&b->strs, char *, i));
    }
    vec_free(&b->strs);
}

static int sink_sbuf(void *ctx, const char *data, size_t len) {
    sbuf_add(ctx, data, len);
    return 0;
}

typedef enum view {
    V_TASKS,
    V_TASKS_ALL,
    V_TREE,
    V_DOT,
    V_MERMAID,
    V_GRAPH_JSON,
    V_JSON,
    V_STACKS,
    V_STACKS_JSON,
    V_TASK,
    V_TASK_JSON,
} view;

/* Renders one view into out (reset first) and returns its text. */
static const char *render(sbuf *out, const aio_model *m, view v, const aio_task *t) {
    sbuf_reset(out);
    out_writer w;
    out_init(&w, sink_sbuf, out);
    switch (v) {
    case V_TASKS:
    case V_TASKS_ALL:
        out_tasks_text(&w, m, v == V_TASKS_ALL);
        break;
    case V_TREE:
        out_tree_text(&w, m, NULL);
        break;
    case V_DOT:
        out_graph(&w, m, SNARL_FORMAT_DOT, NULL);
        break;
    case V_MERMAID:
        out_graph(&w, m, SNARL_FORMAT_MERMAID, NULL);
        break;
    case V_GRAPH_JSON:
        out_graph(&w, m, SNARL_FORMAT_JSON, NULL);
        break;
    case V_JSON:
        out_document_json(&w, m, NULL, NULL);
        break;
    case V_STACKS:
        out_stacks(&w, m, SNARL_FORMAT_TEXT);
        break;
    case V_STACKS_JSON:
        out_stacks(&w, m, SNARL_FORMAT_JSON);
        break;
    case V_TASK:
        out_task_text(&w, m, t);
        break;
    case V_TASK_JSON:
        out_document_json(&w, m, t, NULL);
        break;
    }
    CHECK(out_finish(&w));
    CHECK(!out->oom);
    return sbuf_str(out);
}

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static size_t count_of(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

/* The line of text that contains needle, copied into line (empty if none). */
static const char *line_with(const char *text, const char *needle, char *line, size_t cap) {
    const char *p = strstr(text, needle);
    line[0] = '\0';
    if (!p) {
        return line;
    }
    const char *a = p, *z = p;
    while (a > text && a[-1] != '\n') {
        a--;
    }
    while (*z && *z != '\n') {
        z++;
    }
    snprintf(line, cap, "%.*s", (int)(z - a), a);
    return line;
}

#define CHECK_HAS(text, needle)                                                                    \
    unit_check(strstr((text), (needle)) != NULL, "output contains " #needle, __FILE__, __LINE__)
#define CHECK_LACKS(text, needle)                                                                  \
    unit_check(strstr((text), (needle)) == NULL, "output lacks " #needle, __FILE__, __LINE__)

/* A strict JSON checker (RFC 8259 values), enough to prove the document
 * parses: no raw control characters in strings, only valid escapes. */
typedef struct jp {
    const char *p;
    int depth;
} jp;

static bool json_value(jp *j);

static void json_ws(jp *j) {
    while (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r') {
        j->p++;
    }
}

static bool json_string(jp *j) {
    if (*j->p++ != '"') {
        return false;
    }
    for (;;) {
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"') {
            return true;
        }
        if (c < 0x20) {
            return false;
        }
        if (c == '\\') {
            char e = *j->p++;
            if (e == 'u') {
                for (int k = 0; k < 4; k++, j->p++) {
                    if (!strchr("0123456789abcdefABCDEF", *j->p) || !*j->p) {
                        return false;
                    }
                }
            } else if (!e || !strchr("\"\\/bfnrt", e)) {
                return false;
            }
        }
    }
}

static bool json_number(jp *j) {
    const char *s = j->p;
    if (*j->p == '-') {
        j->p++;
    }
    if (*j->p == '0') {
        j->p++;
    } else if (*j->p >= '1' && *j->p <= '9') {
        while (*j->p >= '0' && *j->p <= '9') {
            j->p++;
        }
    } else {
        return false;
    }
    if (*j->p == '.') {
        j->p++;
        if (!(*j->p >= '0' && *j->p <= '9')) {
            return false;
        }
        while (*j->p >= '0' && *j->p <= '9') {
            j->p++;
        }
    }
    if (*j->p == 'e' || *j->p == 'E') {
        j->p++;
        if (*j->p == '+' || *j->p == '-') {
            j->p++;
        }
        if (!(*j->p >= '0' && *j->p <= '9')) {
            return false;
        }
        while (*j->p >= '0' && *j->p <= '9') {
            j->p++;
        }
    }
    return j->p > s;
}

static bool json_value(jp *j) {
    json_ws(j);
    if (++j->depth > 64) {
        return false;
    }
    bool ok = true;
    if (*j->p == '{' || *j->p == '[') {
        char close = *j->p == '{' ? '}' : ']';
        bool obj = close == '}';
        j->p++;
        json_ws(j);
        if (*j->p == close) {
            j->p++;
        } else {
            for (;;) {
                json_ws(j);
                if (obj) {
                    if (!json_string(j)) {
                        return false;
                    }
                    json_ws(j);
                    if (*j->p++ != ':') {
                        return false;
                    }
                }
                if (!json_value(j)) {
                    return false;
                }
                json_ws(j);
                if (*j->p == ',') {
                    j->p++;
                    continue;
                }
                if (*j->p++ != close) {
                    return false;
                }
                break;
            }
        }
    } else if (*j->p == '"') {
        ok = json_string(j);
    } else if (strncmp(j->p, "true", 4) == 0 || strncmp(j->p, "null", 4) == 0) {
        j->p += 4;
    } else if (strncmp(j->p, "false", 5) == 0) {
        j->p += 5;
    } else {
        ok = json_number(j);
    }
    j->depth--;
    return ok;
}

static bool json_valid(const char *s) {
    jp j = {.p = s};
    if (!json_value(&j)) {
        return false;
    }
    json_ws(&j);
    return *j.p == '\0';
}

/* 250 workers on one queue, numbered names, same stack; two workers that
 * differ (another queue, another line); a main task; a done task. */
static void build_workers(mb *b) {
    mb_res(b, 0x5000, AIO_KIND_QUEUE, "Queue");
    mb_res(b, 0x5100, AIO_KIND_QUEUE, "Queue");
    mb_task(b, 0x1000, "main", AIO_STATE_PENDING);
    mb_task_frame(b, 0x1000, "main", "/srv/app.py", 60);
    for (uint64_t i = 0; i < 252; i++) {
        char name[32];
        snprintf(name, sizeof name, "worker-%d", (int)i + 1);
        uint64_t id = 0x10000 + i * 0x100;
        mb_task(b, id, name, AIO_STATE_PENDING);
        mb_task_frame(b, id, "Queue.get", "/usr/lib/python3.14/asyncio/queues.py", 186);
        mb_task_frame(b, id, "worker", "/srv/app.py", i == 251 ? 43 : 42);
        mb_wait(b, id, AIO_KIND_QUEUE, i == 250 ? 0x5100 : 0x5000);
        /* main keeps them all, as a gather would. */
        mb_id(&mb_find(b, id)->awaited_by, 0x1000);
    }
    mb_task(b, 0x2000, "finisher", AIO_STATE_DONE);
    mb_task(b, 0x3000, "Task-7", AIO_STATE_PENDING);
    mb_task_frame(b, 0x3000, "serve", "/srv/app.py", 80);
}

TEST(tasks_table_groups_identical_workers_into_one_counted_row) {
    mb b;
    mb_init(&b);
    build_workers(&b);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TASKS, NULL);
    CHECK(starts_with(s, "255 tasks in 0 loops (found by registry)\n"));
    char line[512];
    line_with(s, "×250", line, sizeof line);
    CHECK_HAS(line, "0x10000");
    CHECK_HAS(line, "worker-*");
    CHECK_HAS(line, "pending");
    CHECK_HAS(line, "Queue.get asyncio/queues.py:186");
    CHECK_HAS(line, "Queue.get 0x5000");
    /* 250 members awaited by main: named once. */
    CHECK(strlen(line) > 6 && strcmp(line + strlen(line) - 6, "  main") == 0);
    /* The two that differ stand alone: another queue, another line. */
    CHECK_HAS(line_with(s, "worker-251", line, sizeof line), "Queue.get 0x5100");
    CHECK_HAS(line_with(s, "worker-252", line, sizeof line), "Queue.get 0x5000");
    CHECK_EQ(count_of(s, "worker-"), 3);
    /* Header row, five rows (main, the group, two workers, Task-7), done last. */
    CHECK_HAS(s, "id ");
    CHECK_HAS(s, "awaited by\n");
    const char *fin = strstr(s, "finisher"), *t7 = strstr(s, "Task-7");
    CHECK(fin && t7 && fin > t7);
    CHECK_HAS(s, "--all lists each");
    CHECK_LACKS(s, " \n");
    sbuf_free(&out);
    mb_free(&b);
}

TEST(tasks_table_with_all_lists_every_worker_without_counts) {
    mb b;
    mb_init(&b);
    build_workers(&b);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TASKS_ALL, NULL);
    CHECK_LACKS(s, "×");
    CHECK_EQ(count_of(s, "worker-"), 252);
    CHECK_EQ(count_of(s, "\n"), 2 + 1 + 255);
    char line[512];
    CHECK(starts_with(line_with(s, "worker-17 ", line, sizeof line), "0x11000 "));
    sbuf_free(&out);
    mb_free(&b);
}

TEST(tasks_table_names_numbered_alike_but_different_stacks_stay_apart) {
    mb b;
    mb_init(&b);
    mb_task(&b, 0x1000, "Task-1", AIO_STATE_PENDING);
    mb_task_frame(&b, 0x1000, "a", "x.py", 1);
    mb_task(&b, 0x1100, "Task-2", AIO_STATE_PENDING);
    mb_task_frame(&b, 0x1100, "b", "x.py", 1);
    mb_task(&b, 0x1200, "Task-3", AIO_STATE_PENDING);
    mb_task_frame(&b, 0x1200, "a", "x.py", 1);
    mb_task(&b, 0x1300, "Task-4", AIO_STATE_CANCELLED);
    mb_task_frame(&b, 0x1300, "a", "x.py", 1);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TASKS, NULL);
    char line[512];
    CHECK_HAS(line_with(s, "×2", line, sizeof line), "Task-*");
    CHECK_HAS(s, "Task-2");
    CHECK_HAS(s, "Task-4");
    CHECK_LACKS(s, "Task-3");
    /* Header, blank, column names, three rows, blank, the note on grouping. */
    CHECK_EQ(count_of(s, "\n"), 8);
    sbuf_free(&out);
    mb_free(&b);
}

TEST(tasks_table_says_each_kind_of_wait) {
    mb b;
    mb_init(&b);
    aio_resource *r;
    mb_res(&b, 0x5001, AIO_KIND_LOCK, "Lock");
    r = mb_res(&b, 0x5002, AIO_KIND_SLEEP, "Future");
    r->has_deadline = true;
    r->deadline = 1200.0;
    r->has_remaining = true;
    r->remaining = 12.5;
    r = mb_res(&b, 0x5003, AIO_KIND_SLEEP, "Future");
    r->has_deadline = true;
    r->deadline = 1234.5;
    r = mb_res(&b, 0x5004, AIO_KIND_GATHER, "_GatheringFuture");
    mb_id(&r->members, 0x1a00);
    mb_id(&r->members, 0x1b00);
    mb_id(&r->members, 0x1c00);
    r = mb_res(&b, 0x5005, AIO_KIND_TASKGROUP, "TaskGroup");
    for (int i = 0; i < 5; i++) {
        mb_id(&r->members, 0x1d00 + (uint64_t)i);
    }
    mb_res(&b, 0x5006, AIO_KIND_QUEUE, "LifoQueue");
    mb_res(&b, 0x5007, AIO_KIND_EVENT, "Event");
    r = mb_res(&b, 0x5008, AIO_KIND_IO, "Future");
    snprintf(r->detail, sizeof r->detail, "fd 7");
    mb_res(&b, 0x5009, AIO_KIND_SEMAPHORE, "BoundedSemaphore");
    r = mb_res(&b, 0x500a, AIO_KIND_SLEEP, "Future");
    r->has_remaining = true;
    r->remaining = -3;
    r = mb_res(&b, 0x500c, AIO_KIND_WAIT, "Future");
    mb_id(&r->members, 0x1a00);
    mb_id(&r->members, 0x1b00);
    r = mb_res(&b, 0x500d, AIO_KIND_WAIT, "Future");
    r->wait_when = AIO_WAIT_FIRST;
    r->has_remaining = true;
    r->remaining = 5;
    mb_id(&r->members, 0x1a00);
    r = mb_res(&b, 0x500e, AIO_KIND_WAIT, "Future");
    r->wait_when = AIO_WAIT_ERROR;
    mb_id(&r->members, 0x1c00);

    static const struct {
        const char *name;
        aio_kind kind;
        uint64_t on;
        const char *want;
    } cases[] = {
        {"locker", AIO_KIND_LOCK, 0x5001, "Lock 0x5001"},
        {"napper", AIO_KIND_SLEEP, 0x5002, "sleep 12.5s left"},
        {"dozer", AIO_KIND_SLEEP, 0x5003, "sleep until 1234.5"},
        {"gatherer", AIO_KIND_GATHER, 0x5004, "gather of 3"},
        {"grouper", AIO_KIND_TASKGROUP, 0x5005, "TaskGroup of 5"},
        {"getter", AIO_KIND_QUEUE, 0x5006, "LifoQueue.get 0x5006"},
        {"setter", AIO_KIND_EVENT, 0x5007, "Event 0x5007"},
        {"reader", AIO_KIND_IO, 0x5008, "I/O fd 7"},
        {"limited", AIO_KIND_SEMAPHORE, 0x5009, "BoundedSemaphore 0x5009"},
        {"late", AIO_KIND_SLEEP, 0x500a, "sleep overdue by 3.0s"},
        {"waits-all", AIO_KIND_WAIT, 0x500c, "wait for all of 2"},
        {"waits-first", AIO_KIND_WAIT, 0x500d, "wait for the first of 1 5.0s left"},
        {"waits-error", AIO_KIND_WAIT, 0x500e, "wait for an error or all of 1"},
        {"other", AIO_KIND_OTHER, 0x500b, "MyAwaitable"},
        {"child", AIO_KIND_TASK, 0x1f00, "task 'B'"},
        {"runner", AIO_KIND_NONE, 0, "running in thread 77"},
        {"idle", AIO_KIND_NONE, 0, "-"},
    };
    mb_task(&b, 0x1f00, "B", AIO_STATE_PENDING);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        uint64_t id = 0x100000 + i * 0x100;
        aio_task *t = mb_task(&b, id, cases[i].name, AIO_STATE_PENDING);
        if (cases[i].kind == AIO_KIND_OTHER) {
            t->waits_type = "MyAwaitable";
        }
        if (strcmp(cases[i].name, "runner") == 0) {
            t->running_thread = 77;
        }
        mb_task_frame(&b, id, cases[i].kind == AIO_KIND_QUEUE ? "Queue.get" : cases[i].name,
                      "/srv/app.py", (int)i + 1);
        if (cases[i].kind != AIO_KIND_NONE) {
            mb_wait(&b, id, cases[i].kind, cases[i].on);
        }
    }
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TASKS, NULL);
    char line[512];
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "0x%x ", 0x100000 + (unsigned)i * 0x100);
        unit_ctx("%s", cases[i].name);
        line_with(s, needle, line, sizeof line);
        /* The waits column is the last but one. */
        char cell[80];
        snprintf(cell, sizeof cell, "  %s  ", cases[i].want);
        CHECK_HAS(line, cell);
    }
    unit_ctx("awaited by");
    line_with(s, "0x1f00 ", line, sizeof line);
    CHECK(strlen(line) > 7 && strcmp(line + strlen(line) - 7, "  child") == 0);
    sbuf_free(&out);
    mb_free(&b);
}

TEST(tasks_table_cuts_long_cells_and_shortens_long_paths) {
    mb b;
    mb_init(&b);
    char longname[200];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    mb_task(&b, 0x1000, longname, AIO_STATE_PENDING);
    mb_task_frame(&b, 0x1000, "handler",
                  "/home/someone/.venv/lib/python3.14/site-packages/pkg/mod.py", 9);
    mb_task(&b, 0x1100, "short\nname", AIO_STATE_PENDING);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TASKS, NULL);
    char want[64];
    memset(want, 'n', 31);
    snprintf(want + 31, sizeof want - 31, "…  pending");
    CHECK_HAS(s, want);
    CHECK_HAS(s, "handler pkg/mod.py:9");
    CHECK_HAS(s, "short\\x0aname"); /* escaped, not a line break */
    CHECK_LACKS(s, "site-packages");
    sbuf_free(&out);
    mb_free(&b);
}

TEST(tasks_table_group_of_sleepers_shows_the_range_of_time_left) {
    mb b;
    mb_init(&b);
    for (uint64_t i = 0; i < 3; i++) {
        aio_resource *r = mb_res(&b, 0x5000 + i, AIO_KIND_SLEEP, "Future");
        r->has_remaining = true;
        r->remaining = 1.5 + (double)i * 10;
        char name[16];
        snprintf(name, sizeof name, "poller-%d", (int)i);
        mb_task(&b, 0x1000 + i * 0x100, name, AIO_STATE_PENDING);
        mb_task_frame(&b, 0x1000 + i * 0x100, "sleep", "/usr/lib/asyncio/tasks.py", 639);
        mb_task_frame(&b, 0x1000 + i * 0x100, "poll", "/srv/app.py", 5);
        mb_wait(&b, 0x1000 + i * 0x100, AIO_KIND_SLEEP, 0x5000 + i);
    }
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TASKS, NULL);
    char line[512];
    line_with(s, "×3", line, sizeof line);
    CHECK_HAS(line, "poller-*");
    CHECK_HAS(line, "  sleep 1.5–21.5s left  ");
    sbuf_free(&out);
    mb_free(&b);
}

static void mb_request(mb *b, uint64_t task, const char *method, const char *path,
                       const char *client) {
    aio_task *t = mb_find(b, task);
    if (t && (t->request = util_alloc(sizeof *t->request)) != NULL) {
        snprintf(t->request->method, sizeof t->request->method, "%s", method);
        snprintf(t->request->path, sizeof t->request->path, "%s", path);
        snprintf(t->request->client, sizeof t->request->client, "%s", client);
    }
}

/* Three handlers on one lock, two serving the same route: the route groups
 * them, another route stands apart; every view says which request each
 * task serves, the target's control bytes cleaned, JSON escaped. */
TEST(every_view_shows_the_request_a_task_serves) {
    mb b;
    mb_init(&b);
    mb_res(&b, 0x5000, AIO_KIND_LOCK, "Lock");
    static const char *const paths[3] = {"/transfer", "/transfer", "/re\x01port"};
    for (uint64_t i = 0; i < 3; i++) {
        char name[16], client[32];
        snprintf(name, sizeof name, "Task-%d", (int)i + 4);
        snprintf(client, sizeof client, "127.0.0.1:%d", 5000 + (int)i);
        mb_task(&b, 0x1000 + i * 0x100, name, AIO_STATE_PENDING);
        mb_task_frame(&b, 0x1000 + i * 0x100, "Lock.acquire", "/usr/lib/asyncio/locks.py", 110);
        mb_task_frame(&b, 0x1000 + i * 0x100, "endpoint", "/srv/app.py", 7);
        mb_wait(&b, 0x1000 + i * 0x100, AIO_KIND_LOCK, 0x5000);
        mb_request(&b, 0x1000 + i * 0x100, "GET", i == 2 ? "/re\x01port" : paths[i], client);
    }
    /* A real control byte, as a target could hold. */
    VEC_AT(&b.m.tasks, aio_task, 2)->request->path[3] = '\x01';
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TASKS, NULL);
    char line[512];
    CHECK_HAS(line_with(s, "×2", line, sizeof line), "[GET /transfer");
    CHECK_HAS(line_with(s, "Task-6", line, sizeof line), "[GET /re\\x01port");
    s = render(&out, &b.m, V_TREE, NULL);
    CHECK_HAS(s, "task 'Task-4' [GET /transfer from 127.0.0.1:5000]");
    CHECK_HAS(s, "task 'Task-6' [GET /re\\x01port from 127.0.0.1:5002]");
    s = render(&out, &b.m, V_TASK, VEC_AT(&b.m.tasks, aio_task, 1));
    CHECK_HAS(s, "task 'Task-5' [GET /transfer from 127.0.0.1:5001] (0x1100)");
    s = render(&out, &b.m, V_DOT, NULL);
    CHECK_HAS(s, "[GET /transfer from 127.0.0.1:5000]");
    s = render(&out, &b.m, V_JSON, NULL);
    CHECK(json_valid(s));
    CHECK_HAS(s, "\"request\":{\"method\":\"GET\",\"path\":\"/transfer\","
                 "\"client\":\"127.0.0.1:5000\"}");
    CHECK_HAS(s, "\"path\":\"/re\\u0001port\"");
    sbuf_free(&out);
    mb_free(&b);
}

/* sleep(math.inf), anyio's sleep_forever: no time left to count down. */
TEST(a_sleep_at_infinity_is_shown_as_forever) {
    mb b;
    mb_init(&b);
    aio_resource *r = mb_res(&b, 0x5000, AIO_KIND_SLEEP, "Future");
    r->has_remaining = true;
    r->remaining = INFINITY;
    mb_task(&b, 0x1000, "host", AIO_STATE_PENDING);
    mb_task_frame(&b, 0x1000, "sleep", "/usr/lib/asyncio/tasks.py", 716);
    mb_wait(&b, 0x1000, AIO_KIND_SLEEP, 0x5000);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TASKS, NULL);
    char line[512];
    CHECK_HAS(line_with(s, "host", line, sizeof line), "sleep forever");
    CHECK_LACKS(s, "inf");
    s = render(&out, &b.m, V_TREE, NULL);
    CHECK_HAS(s, "sleep forever");
    sbuf_free(&out);
    mb_free(&b);
}

TEST(tasks_header_counts_tasks_and_loops_and_carries_the_warnings) {
    mb b;
    mb_init(&b);
    char **w = vec_push(&b.m.warnings);
    *w = mb_str(&b, "the core file is truncated");
    aio_loop *l = vec_push(&b.m.loops);
    l->id = 0x9000;
    mb_task(&b, 0x1000, "only", AIO_STATE_PENDING);
    sbuf out;
    sbuf_init(&out);
    CHECK(starts_with(render(&out, &b.m, V_TASKS, NULL),
                      "1 task in 1 loop (found by registry)\n"
                      "warning: the core file is truncated\n\n"));
    sbuf_free(&out);
    mb_free(&b);
}

TEST(tree_and_task_view_say_a_cut_chain_lacks_its_inner_frames) {
    mb b;
    mb_init(&b);
    aio_task *t = mb_task(&b, 0x1000, "deep", AIO_STATE_PENDING);
    t->truncated = true;
    mb_task_frame(&b, 0x1000, "level2", "app.py", 2);
    mb_task_frame(&b, 0x1000, "level1", "app.py", 1);
    sbuf out;
    sbuf_init(&out);
    CHECK_HAS(render(&out, &b.m, V_TREE, NULL),
              "task 'deep' (0x1000)\n"
              "├── level1 app.py:1\n"
              "├── level2 app.py:2\n"
              "└── … inner frames missing (the chain is damaged or too deep)\n");
    CHECK_HAS(render(&out, &b.m, V_TASK, mb_find(&b, 0x1000)),
              "Stack (innermost first):\n"
              "    ... (inner frames missing: the chain is damaged or too deep)\n"
              "    level2 (app.py:2)\n"
              "    level1 (app.py:1)\n");
    sbuf_free(&out);
    mb_free(&b);
}

TEST(tree_names_awaited_ids_the_model_lacks) {
    mb b;
    mb_init(&b);
    mb_task(&b, 0x1000, "lost", AIO_STATE_PENDING);
    mb_wait(&b, 0x1000, AIO_KIND_TASK, 0xbad0);
    aio_task *t = mb_task(&b, 0x2000, "orphan", AIO_STATE_DONE);
    mb_id(&t->awaited_by, 0xbad1);
    sbuf out;
    sbuf_init(&out);
    /* The orphan's awaiter is missing: it has no root, so it leads its own. */
    CHECK_STR(render(&out, &b.m, V_TREE, NULL), "2 tasks in 0 loops (found by registry)\n"
                                                "\n"
                                                "task 'lost' (0x1000)\n"
                                                "└── ? 0xbad0 (not in the model)\n"
                                                "task 'orphan' (0x2000) [done]\n");
    sbuf_free(&out);
    mb_free(&b);
}

/* R gathers C and D, which both await S; A and B await each other. */
static void build_cycle_and_shared(mb *b) {
    aio_resource *g = mb_res(b, 0x6000, AIO_KIND_GATHER, "_GatheringFuture");
    mb_id(&g->members, 0xc00);
    mb_id(&g->members, 0xd00);
    mb_task(b, 0xa00, "A", AIO_STATE_PENDING);
    mb_task_frame(b, 0xa00, "a", "app.py", 1);
    mb_task(b, 0xb00, "B", AIO_STATE_PENDING);
    mb_task_frame(b, 0xb00, "b", "app.py", 2);
    mb_task(b, 0x100, "R", AIO_STATE_PENDING);
    mb_task_frame(b, 0x100, "inner", "app.py", 11);
    mb_task_frame(b, 0x100, "outer", "app.py", 10);
    mb_task(b, 0xc00, "C", AIO_STATE_PENDING);
    mb_task(b, 0xd00, "D", AIO_STATE_PENDING);
    mb_task(b, 0x500, "S", AIO_STATE_PENDING);
    mb_task_frame(b, 0x500, "s", "app.py", 5);
    mb_wait(b, 0xa00, AIO_KIND_TASK, 0xb00);
    mb_wait(b, 0xb00, AIO_KIND_TASK, 0xa00);
    mb_wait(b, 0x100, AIO_KIND_GATHER, 0x6000);
    mb_wait(b, 0xc00, AIO_KIND_TASK, 0x500);
    mb_wait(b, 0xd00, AIO_KIND_TASK, 0x500);
}

TEST(tree_prints_a_cycle_once_with_the_back_edge_marked_and_shared_tasks_once) {
    mb b;
    mb_init(&b);
    build_cycle_and_shared(&b);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TREE, NULL);
    CHECK_STR(s, "6 tasks in 0 loops (found by registry)\n"
                 "\n"
                 "task 'R' (0x100)\n"
                 "├── outer app.py:10\n"
                 "├── inner app.py:11\n"
                 "└── ⏳ gather of 2 (0x6000)\n"
                 "    ├── task 'C' (0xc00)\n"
                 "    │   └── task 'S' (0x500)\n"
                 "    │       └── s app.py:5\n"
                 "    └── task 'D' (0xd00)\n"
                 "        └── ↺ task 'S' (0x500) — see above\n"
                 "task 'A' (0xa00)\n"
                 "├── a app.py:1\n"
                 "└── task 'B' (0xb00)\n"
                 "    ├── b app.py:2\n"
                 "    └── ↺ cycle back to task 'A' (0xa00)\n");
    sbuf_free(&out);
    mb_free(&b);
}

TEST(tree_prints_each_task_of_a_shared_lattice_once) {
    /* Forty levels of two tasks, each awaiting both tasks of the next level:
     * 2^40 paths, 80 tasks. */
    enum { LEVELS = 40 };
    mb b;
    mb_init(&b);
    for (uint64_t i = 0; i < LEVELS; i++) {
        char name[16];
        snprintf(name, sizeof name, "a%d", (int)i);
        mb_task(&b, 0x1000 + i * 2, name, AIO_STATE_PENDING);
        snprintf(name, sizeof name, "b%d", (int)i);
        mb_task(&b, 0x1001 + i * 2, name, AIO_STATE_PENDING);
    }
    for (uint64_t i = 0; i + 1 < LEVELS; i++) {
        for (uint64_t k = 0; k < 2; k++) {
            aio_task *t = mb_find(&b, 0x1000 + i * 2 + k);
            mb_id(&t->awaits, 0x1000 + (i + 1) * 2);
            mb_id(&t->awaits, 0x1001 + (i + 1) * 2);
            mb_id(&mb_find(&b, 0x1000 + (i + 1) * 2)->awaited_by, t->id);
            mb_id(&mb_find(&b, 0x1001 + (i + 1) * 2)->awaited_by, t->id);
        }
    }
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TREE, NULL);
    CHECK_EQ(count_of(s, "task 'a39' (0x104e)\n"), 1);
    /* b1..b38 find both their children shown, and so does the root b0. */
    CHECK_EQ(count_of(s, "see above"), 2 * LEVELS - 2);
    CHECK_EQ(count_of(s, "\n"), 2 + 2 * LEVELS + 2 * LEVELS - 2);
    CHECK_LACKS(s, "cycle");
    sbuf_free(&out);
    mb_free(&b);
}

TEST(tree_shows_a_gathers_children_under_the_gather_only) {
    mb b;
    mb_init(&b);
    aio_resource *g = mb_res(&b, 0x6000, AIO_KIND_GATHER, "_GatheringFuture");
    mb_id(&g->members, 0x2000);
    mb_id(&g->members, 0x3000);
    mb_task(&b, 0x1000, "parent", AIO_STATE_PENDING);
    mb_task(&b, 0x2000, "kid-1", AIO_STATE_PENDING);
    mb_task(&b, 0x3000, "kid-2", AIO_STATE_PENDING);
    mb_wait(&b, 0x1000, AIO_KIND_GATHER, 0x6000);
    /* An engine may list the children in awaits as well. */
    aio_task *p = mb_find(&b, 0x1000);
    mb_id(&p->awaits, 0x2000);
    mb_id(&p->awaits, 0x3000);
    sbuf out;
    sbuf_init(&out);
    CHECK_STR(render(&out, &b.m, V_TREE, NULL), "3 tasks in 0 loops (found by registry)\n"
                                                "\n"
                                                "task 'parent' (0x1000)\n"
                                                "└── ⏳ gather of 2 (0x6000)\n"
                                                "    ├── task 'kid-1' (0x2000)\n"
                                                "    └── task 'kid-2' (0x3000)\n");
    sbuf_free(&out);
    mb_free(&b);
}

/* Tasks 0..n-1, each awaiting the next; with ring, the last awaits the first. */
static void build_chain(mb *b, size_t n, bool ring) {
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "link-%zu", i);
        mb_task(b, 0x100000 + i * 0x10, name, AIO_STATE_PENDING);
    }
    for (size_t i = 0; i < n; i++) {
        aio_task *t = VEC_AT(&b->m.tasks, aio_task, i);
        if (i + 1 == n && !ring) {
            break;
        }
        size_t j = (i + 1) % n;
        aio_task *u = VEC_AT(&b->m.tasks, aio_task, j);
        t->waits_kind = AIO_KIND_TASK;
        t->waits_on = u->id;
        mb_id(&t->awaits, u->id);
        mb_id(&u->awaited_by, t->id);
    }
}

TEST(tree_renders_a_10000_deep_chain_cut_at_the_depth_limit) {
    mb b;
    mb_init(&b);
    build_chain(&b, 10000, false);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TREE, NULL);
    /* The root and 64 levels below it, then one line for the rest. */
    CHECK_HAS(s, "cut at depth 64: 9935 more tasks below");
    CHECK_EQ(count_of(s, "link-"), 65);
    CHECK_LACKS(s, "link-9999");
    CHECK_EQ(count_of(s, "\n"), 2 + 65 + 1);
    sbuf_free(&out);
    mb_free(&b);
}

TEST(tree_renders_a_10000_task_ring_once_from_its_first_task) {
    mb b;
    mb_init(&b);
    build_chain(&b, 10000, true);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TREE, NULL);
    CHECK(
        starts_with(s, "10000 tasks in 0 loops (found by registry)\n\ntask 'link-0' (0x100000)\n"));
    CHECK_HAS(s, "cut at depth 64: 9935 more tasks below");
    CHECK_EQ(count_of(s, "\ntask "), 1);
    sbuf_free(&out);
    mb_free(&b);
}

TEST(tree_of_a_short_ring_marks_the_back_edge_and_ends) {
    mb b;
    mb_init(&b);
    build_chain(&b, 3, true);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TREE, NULL);
    CHECK_STR(s, "3 tasks in 0 loops (found by registry)\n"
                 "\n"
                 "task 'link-0' (0x100000)\n"
                 "└── task 'link-1' (0x100010)\n"
                 "    └── task 'link-2' (0x100020)\n"
                 "        └── ↺ cycle back to task 'link-0' (0x100000)\n");
    sbuf_free(&out);
    mb_free(&b);
}

static void build_graph(mb *b) {
    mb_res(b, 0x5000, AIO_KIND_LOCK, "Lock");
    aio_resource *g = mb_res(b, 0x6000, AIO_KIND_GATHER, "_GatheringFuture");
    mb_id(&g->members, 0x3000);
    mb_task(b, 0x1000, "say \"hi\" [x] {y} <z> #1 \\ back|pipe", AIO_STATE_PENDING);
    mb_task_frame(b, 0x1000, "<lambda>", "app.py", 3);
    mb_task(b, 0x2000, "plain", AIO_STATE_PENDING);
    mb_task(b, 0x3000, "member", AIO_STATE_DONE);
    mb_task(b, 0x4000, "line\nbreak", AIO_STATE_PENDING);
    mb_wait(b, 0x1000, AIO_KIND_TASK, 0x2000);
    mb_wait(b, 0x2000, AIO_KIND_LOCK, 0x5000);
    mb_wait(b, 0x4000, AIO_KIND_GATHER, 0x6000);
}

TEST(graph_dot_escapes_quotes_and_backslashes_in_labels) {
    mb b;
    mb_init(&b);
    build_graph(&b);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_DOT, NULL);
    CHECK(starts_with(s, "digraph snarl {\n"));
    CHECK_HAS(s, "    \"0x1000\" [shape=box, label=\"task 'say \\\"hi\\\" [x] {y} <z> #1 \\\\ "
                 "back|pipe'\\n0x1000\\n<lambda> app.py:3\"];\n");
    CHECK_HAS(s, "    \"0x5000\" [shape=ellipse, label=\"lock Lock\\n0x5000\"];\n");
    CHECK_HAS(s, "label=\"task 'line\\\\x0abreak'\\n0x4000\"];\n");
    CHECK_HAS(s,
              "\"0x3000\" [shape=box, label=\"task 'member'\\n0x3000\\n[done]\", style=dashed];");
    CHECK_HAS(s, "    \"0x1000\" -> \"0x2000\";\n");
    CHECK_HAS(s, "    \"0x2000\" -> \"0x5000\";\n");
    CHECK_HAS(s, "    \"0x4000\" -> \"0x6000\";\n");
    CHECK_HAS(s, "    \"0x6000\" -> \"0x3000\" [style=dashed];\n");
    CHECK(strcmp(s + strlen(s) - 2, "}\n") == 0);
    sbuf_free(&out);
    mb_free(&b);
}

TEST(graph_mermaid_escapes_quotes_and_brackets_in_labels) {
    mb b;
    mb_init(&b);
    build_graph(&b);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_MERMAID, NULL);
    CHECK(starts_with(s, "flowchart LR\n"));
    CHECK_HAS(s, "    t0x1000[\"task 'say #quot;hi#quot; #91;x#93; #123;y#125; #lt;z#gt; #35;1 \\ "
                 "back#124;pipe'<br/>0x1000<br/>#lt;lambda#gt; app.py:3\"]\n");
    CHECK_HAS(s, "    r0x5000([\"lock Lock<br/>0x5000\"])\n");
    CHECK_HAS(s, "    r0x6000([\"gather _GatheringFuture<br/>0x6000\"])\n");
    CHECK_HAS(s, "t0x3000[\"task 'member'<br/>0x3000<br/>#91;done#93;\"]:::done\n");
    CHECK_HAS(s, "    t0x1000 --> t0x2000\n");
    CHECK_HAS(s, "    t0x2000 --> r0x5000\n");
    CHECK_HAS(s, "    r0x6000 -.-> t0x3000\n");
    /* Every label is one quoted string: quotes come in pairs per line. */
    for (const char *p = s; *p;) {
        const char *e = strchr(p, '\n');
        size_t q = 0;
        for (const char *c = p; c < e; c++) {
            q += *c == '"';
        }
        CHECK_EQ(q % 2, 0);
        p = e + 1;
    }
    sbuf_free(&out);
    mb_free(&b);
}

TEST(graph_json_is_the_document) {
    mb b;
    mb_init(&b);
    build_graph(&b);
    sbuf out, doc;
    sbuf_init(&out);
    sbuf_init(&doc);
    render(&doc, &b.m, V_JSON, NULL);
    CHECK_STR(render(&out, &b.m, V_GRAPH_JSON, NULL), sbuf_str(&doc));
    sbuf_free(&out);
    sbuf_free(&doc);
    mb_free(&b);
}

TEST(json_document_escapes_strings_and_writes_null_for_absent_values) {
    mb b;
    mb_init(&b);
    aio_resource *r = mb_res(&b, 0x5000, AIO_KIND_SLEEP, "Future");
    r->has_remaining = true;
    r->remaining = 12.5;
    r = mb_res(&b, 0x5100, AIO_KIND_TIMEOUT, "Timeout");
    r->has_deadline = true;
    r->deadline = NAN; /* a clock read as garbage */
    snprintf(r->detail, sizeof r->detail, "say \"when\"");
    aio_task *t = mb_task(&b, 0x1000, "a\"b\\c\nd\te\x01", AIO_STATE_PENDING);
    t->loop = 0;
    t->found_by = "heap";
    mb_task(&b, 0x2000, "sleeper", AIO_STATE_CANCELLED);
    t = mb_find(&b, 0x2000);
    t->created_at = mb_str(&b, "app.py:3");
    t->running_thread = 77;
    t->cancels = 2;
    mb_task_frame(&b, 0x2000, "nap", "app.py", -1);
    aio_frame *f = vec_push(&t->frames);
    f->addr = 0xdead;
    mb_wait(&b, 0x2000, AIO_KIND_SLEEP, 0x5000);
    aio_loop *l = vec_push(&b.m.loops);
    l->id = 0x9000;
    snprintf(l->type, sizeof l->type, "_UnixSelectorEventLoop");
    l->running_task = 0;
    l->thread = 0;
    char **w = vec_push(&b.m.warnings);
    *w = mb_str(&b, "core \"truncated\"");

    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_JSON, NULL);
    CHECK(json_valid(s));
    CHECK(starts_with(s, "{\"schema\":\"snarl/1\",\"target\":{\"kind\":\"live\",\"pid\":4242,"));
    CHECK_HAS(s, "\"tasks_found_by\":\"registry\"");
    CHECK_HAS(s, "{\"id\":\"0x1000\",\"name\":\"a\\\"b\\\\c\\nd\\te\\u0001\",\"type\":\"_asyncio."
                 "Task\",\"request\":null,"
                 "\"state\":\"pending\",\"cancels\":0,\"loop\":null,\"stack\":[],\"waits\":null,"
                 "\"awaits\":[],\"awaited_by\":[],\"awaited_by_interpreter\":[],"
                 "\"found_by\":\"heap\",\"running_in_thread\":null,\"created_at\":null,"
                 "\"truncated\":false,\"weak_only\":false,\"stuck\":false,\"cancellable\":false}");
    CHECK_HAS(s,
              "\"state\":\"cancelled\",\"cancels\":2,\"loop\":\"0x9000\",\"stack\":["
              "{\"function\":\"nap\",\"file\":\"app.py\",\"line\":null},"
              "{\"function\":null,\"file\":null,\"line\":null,\"error\":\"unreadable at 0xdead\"}],"
              "\"waits\":{\"kind\":\"sleep\",\"id\":\"0x5000\",\"type\":\"Future\"},"
              "\"awaits\":[\"0x5000\"]");
    CHECK_HAS(s, "\"running_in_thread\":77,\"created_at\":\"app.py:3\"");
    CHECK_HAS(s,
              "\"loops\":[{\"id\":\"0x9000\",\"type\":\"_UnixSelectorEventLoop\",\"thread\":null,"
              "\"running_task\":null}]");
    CHECK_HAS(s, "{\"id\":\"0x5000\",\"kind\":\"sleep\",\"type\":\"Future\",\"future\":null,"
                 "\"waiters\":[\"0x2000\"],\"members\":[],\"deadline\":null,\"remaining\":12.5,"
                 "\"detail\":\"\",\"holders\":[],\"possible_holders\":[],\"resolvers\":[],"
                 "\"thread_holders\":[],\"thread_waiters\":[],\"chained\":null}");
    CHECK_HAS(
        s, "\"deadline\":null,\"remaining\":null,\"detail\":\"say \\\"when\\\"\",\"holders\":[]");
    CHECK_HAS(s, "\"warnings\":[\"core \\\"truncated\\\"\"]}\n");
    sbuf_free(&out);
    mb_free(&b);
}

TEST(json_for_one_task_has_only_it_its_locals_and_the_resources_it_touches) {
    mb b;
    mb_init(&b);
    mb_res(&b, 0x5000, AIO_KIND_LOCK, "Lock");
    mb_res(&b, 0x5100, AIO_KIND_EVENT, "Event");
    mb_task(&b, 0x1000, "one", AIO_STATE_PENDING);
    aio_task *t = mb_find(&b, 0x1000);
    aio_frame *f = mb_frame(&b, &t->frames, "work", "app.py", 4);
    aio_local *loc = vec_push(aio_frame_locals(f));
    loc->name = mb_str(&b, "item");
    loc->repr = mb_str(&b, "'a\"b'");
    mb_task(&b, 0x2000, "two", AIO_STATE_PENDING);
    mb_wait(&b, 0x1000, AIO_KIND_LOCK, 0x5000);
    mb_wait(&b, 0x2000, AIO_KIND_EVENT, 0x5100);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TASK_JSON, mb_find(&b, 0x1000));
    CHECK(json_valid(s));
    CHECK_HAS(s, "\"stack\":[{\"function\":\"work\",\"file\":\"app.py\",\"line\":4,"
                 "\"locals\":[{\"name\":\"item\",\"repr\":\"'a\\\"b'\"}]}]");
    CHECK_LACKS(s, "\"0x2000\"");
    CHECK_HAS(s, "\"resources\":[{\"id\":\"0x5000\"");
    CHECK_LACKS(s, "0x5100");
    sbuf_free(&out);
    mb_free(&b);
}

static void build_thread(mb *b) {
    mb_task(b, 0x1000, "main", AIO_STATE_PENDING);
    aio_thread *th = vec_push(&b->m.threads);
    th->native_id = 4243;
    snprintf(th->name, sizeof th->name, "MainThread");
    th->holds_gil = true;
    vec_init(&th->frames, sizeof(aio_frame));
    aio_frame_set_task(mb_frame(b, &th->frames, "compute", "/srv/app.py", 20), 0x1000);
    aio_frame_set_task(mb_frame(b, &th->frames, "main", "/srv/app.py", 30), 0x1000);
    mb_frame(b, &th->frames, "BaseEventLoop._run_once", "/usr/lib/asyncio/base_events.py", 2000);
    mb_frame(b, &th->frames, "<module>", "/srv/app.py", 40);
}

TEST(stacks_splice_the_running_task_line_before_its_frames) {
    mb b;
    mb_init(&b);
    build_thread(&b);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_STACKS, NULL);
    CHECK_STR(s, "Python 3.14.0, process 4242 (read without freezing)\n"
                 "\n"
                 "Thread 4243 \"MainThread\" (holds the GIL)\n"
                 "    ── task 'main' (0x1000) ──\n"
                 "    compute (/srv/app.py:20)\n"
                 "    main (/srv/app.py:30)\n"
                 "    BaseEventLoop._run_once (/usr/lib/asyncio/base_events.py:2000)\n"
                 "    <module> (/srv/app.py:40)\n");
    s = render(&out, &b.m, V_STACKS_JSON, NULL);
    CHECK(json_valid(s));
    CHECK_HAS(
        s, "{\"function\":\"compute\",\"file\":\"/srv/app.py\",\"line\":20,\"task\":\"0x1000\"}");
    CHECK_HAS(s,
              "{\"function\":\"main\",\"file\":\"/srv/app.py\",\"line\":30,\"task\":\"0x1000\"}");
    CHECK_HAS(s, "\"line\":2000}");
    CHECK_EQ(count_of(s, "\"task\""), 2);
    sbuf_free(&out);
    mb_free(&b);
}

TEST(stacks_splice_names_an_unknown_task_by_id) {
    mb b;
    mb_init(&b);
    build_thread(&b);
    VEC_AT(&b.m.tasks, aio_task, 0)->id = 0x7777;
    sbuf out;
    sbuf_init(&out);
    CHECK_HAS(render(&out, &b.m, V_STACKS, NULL), "    ── task 0x1000 ──\n    compute");
    sbuf_free(&out);
    mb_free(&b);
}

TEST(task_view_shows_header_stack_with_locals_waits_and_awaiters) {
    mb b;
    mb_init(&b);
    aio_resource *r = mb_res(&b, 0x5000, AIO_KIND_LOCK, "Lock");
    snprintf(r->detail, sizeof r->detail, "locked");
    mb_task(&b, 0x1000, "main", AIO_STATE_PENDING);
    aio_task *t = mb_task(&b, 0x2000, "worker", AIO_STATE_PENDING);
    t->cancels = 1;
    t->created_at = mb_str(&b, "app.py:7");
    t->awaited_by_interp = util_calloc(1, sizeof(vec));
    mb_id(t->awaited_by_interp, 0x1000);
    aio_frame *f = mb_frame(&b, &t->frames, "Lock.acquire", "/usr/lib/asyncio/locks.py", 113);
    f = mb_frame(&b, &t->frames, "worker", "/srv/app.py", 12);
    aio_local *loc = vec_push(aio_frame_locals(f));
    loc->name = mb_str(&b, "n");
    loc->repr = mb_str(&b, "3");
    mb_wait(&b, 0x1000, AIO_KIND_TASK, 0x2000);
    mb_wait(&b, 0x2000, AIO_KIND_LOCK, 0x5000);
    sbuf out;
    sbuf_init(&out);
    const char *s = render(&out, &b.m, V_TASK, mb_find(&b, 0x2000));
    CHECK_STR(s, "task 'worker' (0x2000)\n"
                 "    type:       _asyncio.Task\n"
                 "    state:      pending, 1 cancel request\n"
                 "    loop:       0x9000\n"
                 "    found by:   registry\n"
                 "    created at: app.py:7\n"
                 "\n"
                 "Stack (innermost first):\n"
                 "    Lock.acquire (/usr/lib/asyncio/locks.py:113)\n"
                 "    worker (/srv/app.py:12)\n"
                 "        n = 3\n"
                 "\n"
                 "Waits on:\n"
                 "    Lock 0x5000 (locked)\n"
                 "        waiters: task 'worker' (0x2000)\n"
                 "\n"
                 "Awaited by:\n"
                 "    task 'main' (0x1000)\n"
                 "\n"
                 "Awaited by, as the interpreter records it:\n"
                 "    task 'main' (0x1000)\n"
                 "\n"
                 "Awaits:\n"
                 "    Lock 0x5000 (locked)\n");
    s = render(&out, &b.m, V_TASK, mb_find(&b, 0x1000));
    CHECK_HAS(s, "Waits on:\n    task 'worker' (0x2000), pending\n");
    CHECK_HAS(s, "Awaited by:\n    (none)\n");
    sbuf_free(&out);
    mb_free(&b);
}

TEST(views_of_an_empty_model_say_so_and_stay_valid) {
    mb b;
    mb_init(&b);
    b.m.tasks_found_by = NULL;
    sbuf out;
    sbuf_init(&out);
    CHECK_STR(render(&out, &b.m, V_TASKS, NULL), "0 tasks in 0 loops\n");
    CHECK_STR(render(&out, &b.m, V_TREE, NULL), "0 tasks in 0 loops\n");
    CHECK_STR(render(&out, &b.m, V_DOT, NULL),
              "digraph snarl {\n    rankdir=LR;\n    node [fontname=\"monospace\"];\n}\n");
    const char *s = render(&out, &b.m, V_JSON, NULL);
    CHECK(json_valid(s));
    CHECK_HAS(
        s, "\"tasks_found_by\":null,\"tasks\":[],\"loops\":[],\"resources\":[],\"warnings\":[]}");
    sbuf_free(&out);
    mb_free(&b);
}

/* Renders without checking, for the fault test: true when the writer and
 * the capture both say every byte arrived. */
static bool render_quiet(sbuf *out, const aio_model *m, view v, const aio_task *t) {
    sbuf_reset(out);
    out->oom = false;
    out_writer w;
    out_init(&w, sink_sbuf, out);
    switch (v) {
    case V_TASKS:
    case V_TASKS_ALL:
        out_tasks_text(&w, m, v == V_TASKS_ALL);
        break;
    case V_TREE:
        out_tree_text(&w, m, NULL);
        break;
    case V_DOT:
    case V_MERMAID:
    case V_GRAPH_JSON:
        out_graph(&w, m,
                  v == V_DOT       ? SNARL_FORMAT_DOT
                  : v == V_MERMAID ? SNARL_FORMAT_MERMAID
                                   : SNARL_FORMAT_JSON,
                  NULL);
        break;
    case V_JSON:
    case V_TASK_JSON:
        out_document_json(&w, m, v == V_TASK_JSON ? t : NULL, NULL);
        break;
    case V_STACKS:
    case V_STACKS_JSON:
        out_stacks(&w, m, v == V_STACKS ? SNARL_FORMAT_TEXT : SNARL_FORMAT_JSON);
        break;
    case V_TASK:
        out_task_text(&w, m, t);
        break;
    }
    bool ok = out_finish(&w);
    return ok && !out->oom;
}

/* Allocations a view makes on these small models, with room to spare. */
#define VIEW_ALLOCS_MAX 2000

TEST(views_report_a_failed_allocation_at_any_point_instead_of_printing_less) {
    mb b;
    mb_init(&b);
    build_cycle_and_shared(&b);
    build_thread(&b);
    aio_resource *r = mb_res(&b, 0x5000, AIO_KIND_SLEEP, "Future");
    r->has_remaining = true;
    r->remaining = 2;
    mb_task(&b, 0x7000, "sleeper-1", AIO_STATE_PENDING);
    mb_task(&b, 0x7100, "sleeper-2", AIO_STATE_PENDING);
    mb_wait(&b, 0x7000, AIO_KIND_SLEEP, 0x5000);
    mb_wait(&b, 0x7100, AIO_KIND_SLEEP, 0x5000);
    mb_wait(&b, 0x7100, AIO_KIND_TASK, 0x500);
    const aio_task *one = mb_find(&b, 0x100);
    sbuf want, got;
    sbuf_init(&want);
    sbuf_init(&got);
    for (view v = V_TASKS; v <= V_TASK_JSON; v++) {
        unit_ctx("view %d", (int)v);
        if (!CHECK(render_quiet(&want, &b.m, v, one))) {
            continue;
        }
        size_t n = 1;
        for (; n < VIEW_ALLOCS_MAX; n++) {
            util_fail_alloc_at(n);
            bool ok = render_quiet(&got, &b.m, v, one);
            util_fail_alloc_at(0);
            if (ok) {
                /* The failure did not fire: every allocation was made. */
                CHECK_STR(sbuf_str(&got), sbuf_str(&want));
                break;
            }
        }
        CHECK(n > 1 && n < VIEW_ALLOCS_MAX);
    }
    sbuf_free(&want);
    sbuf_free(&got);
    mb_free(&b);
}

/* Names packed in blocks: each copy stays intact as later ones fill its
 * block and the next, and a long one (its own block) in between changes
 * neither. */
TEST(model_texts_keep_their_bytes_across_blocks) {
    aio_model m;
    memset(&m, 0, sizeof m);
    enum { N = 20000 }; /* about 250 KB of names: several blocks */
    static char *got[N];
    char want[64], big[40000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char *long_copy = NULL;
    for (int i = 0; i < N; i++) {
        snprintf(want, sizeof want, "worker-%d", i);
        got[i] = aio_text(&m, want);
        if (i == N / 2) {
            long_copy = aio_text(&m, big);
        }
    }
    int bad = 0;
    for (int i = 0; i < N; i++) {
        snprintf(want, sizeof want, "worker-%d", i);
        bad += !got[i] || strcmp(got[i], want) != 0;
    }
    CHECK_EQ(bad, 0);
    CHECK(long_copy && strcmp(long_copy, big) == 0);
    CHECK(m.arena.blocks.len > 2);
    aio_model_free(&m);
}

/* Counts are 32 bits: a vector asked to hold more refuses, allocating
 * nothing, instead of wrapping. */
TEST(vec_refuses_more_than_32_bit_counts) {
    vec v;
    vec_init(&v, sizeof(uint64_t));
    CHECK(!vec_reserve(&v, (size_t)VEC_LEN_MAX + 1));
    CHECK(v.data == NULL && v.cap == 0);
    CHECK(vec_reserve(&v, 3));
    CHECK(u64vec_push(&v, 7) && u64vec_push(&v, 8));
    vec_shrink(&v);
    CHECK_EQ(v.cap, 2);
    CHECK(*VEC_AT(&v, uint64_t, 1) == 8);
    vec_free(&v);
}

/* The tasks sorted in place: every record arrives whole at its place in
 * the order (pending, loop, address), through permutation cycles of every
 * length. */
TEST(model_tasks_sort_in_place_by_state_loop_and_address) {
    aio_model m;
    memset(&m, 0, sizeof m);
    vec_init(&m.tasks, sizeof(aio_task));
    enum { N = 5000 };
    uint64_t seed = 12345;
    for (int i = 0; i < N; i++) {
        aio_task *t = vec_push(&m.tasks);
        if (!CHECK(t != NULL)) {
            vec_free(&m.tasks);
            return;
        }
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        t->id = 0x7f0000000000ull + (seed >> 40) * 64 + (uint64_t)i * 8;
        t->loop = 0x1000 + ((seed >> 20) & 3) * 0x100;
        t->state = (seed >> 30) & 1 ? AIO_STATE_PENDING : AIO_STATE_DONE;
        t->coro = t->id ^ t->loop; /* a field that must travel with its task */
    }
    CHECK_ERR(aio_sort_tasks(&m), ERR_OK);
    int bad = 0;
    for (size_t i = 0; i < m.tasks.len; i++) {
        const aio_task *t = VEC_AT(&m.tasks, aio_task, i);
        bad += t->coro != (t->id ^ t->loop);
        if (i > 0) {
            const aio_task *p = VEC_AT(&m.tasks, aio_task, i - 1);
            bool pd = p->state != AIO_STATE_PENDING, td = t->state != AIO_STATE_PENDING;
            bad += pd > td ||
                   (pd == td && (p->loop > t->loop || (p->loop == t->loop && p->id >= t->id)));
        }
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(m.tasks.len, N);
    vec_free(&m.tasks);
}

TEST(model_type_names_are_kept_once_per_text) {
    aio_model m;
    memset(&m, 0, sizeof m);
    const char *a = aio_intern(&m, "_asyncio.Task"), *b = aio_intern(&m, "_asyncio.Task");
    const char *c = aio_intern(&m, "Task");
    CHECK(a != NULL && a == b);
    CHECK(c != NULL && c != a);
    CHECK(c && strcmp(c, "Task") == 0);
    CHECK_EQ(m.strings.len, 2);
    aio_model_free(&m);
}

/* The output layer: the model to bytes through the front end's sink. Text
 * for people, JSON (schema snarl/1) for programs. Knows nothing of where the
 * bytes go. */
#ifndef SNARL_OUT_H
#define SNARL_OUT_H

#include "../aio/aio.h"
#include "../ana/ana.h"
#include "../snarl.h"

/* Bytes buffered before they are handed to the sink. */
#define OUT_FLUSH_AT 16384

typedef struct out_writer {
    snarl_sink sink;
    void *ctx;
    sbuf buf;
    bool failed; /* the sink asked to stop, or memory ran out */
} out_writer;

void out_init(out_writer *w, snarl_sink sink, void *ctx);
/* Flushes and releases; returns false if any output was lost. */
bool out_finish(out_writer *w);
void out_puts(out_writer *w, const char *s);
void out_printf(out_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal (quoted, escaped); NULL writes null. */
void out_json_str(out_writer *w, const char *s);

/* The views. Each is a pure function of the model: no memory is read. On
 * allocation failure a view stops and marks the writer failed. */
void out_stacks(out_writer *w, const aio_model *m, snarl_format fmt);
/* The full snarl/1 document; only non-NULL: that task alone in "tasks" (with
 * its frames' locals) and the resources it touches. */
void out_document_json(out_writer *w, const aio_model *m, const aio_task *only,
                       const ana_result *diag);
/* "diagnoses":[...],"verdict":"...", (with the trailing comma). */
void out_json_diagnoses(out_writer *w, const aio_model *m, const ana_result *diag);
/* check: the report, jstack-style. */
void out_check_text(out_writer *w, const aio_model *m, const ana_result *diag);
/* "  ⚠ lock-cycle" after a task or resource named in findings. */
void out_mark_task(sbuf *b, uint64_t id, const ana_result *diag);
/* The one-line verdict. */
void out_verdict(sbuf *b, const aio_model *m, const ana_result *diag);
/* `tasks`: one row per task; identical tasks share a row unless all. */
void out_tasks_text(out_writer *w, const aio_model *m, bool all);
/* `tree`: the await tree from the roots down; cycles and shared children are
 * printed once and referred to after. */
void out_tree_text(out_writer *w, const aio_model *m, const ana_result *diag);
/* `graph`: the wait-for graph as DOT, Mermaid or the JSON document. */
void out_graph(out_writer *w, const aio_model *m, snarl_format fmt, const ana_result *diag);
/* `task ID`: one task in full. */
void out_task_text(out_writer *w, const aio_model *m, const aio_task *t);

/* Shared by the out_*.c files. */

/* JSON pieces of the snarl/1 document; each writes one member ("key":value,
 * no separating comma) or one value. */
void out_json_target(out_writer *w, const aio_model *m);
void out_json_threads(out_writer *w, const aio_model *m);
void out_json_warnings(out_writer *w, const aio_model *m);
/* A frame list; locals are written when a frame has them. */
void out_json_frames(out_writer *w, const vec *frames);
/* "0x..." or null for 0. */
void out_json_addr(out_writer *w, uint64_t addr);
/* A JSON array of addresses ("0x..." strings) from a vector of uint64_t. */
void out_json_addrs(out_writer *w, const vec *ids);
/* Native thread ids (int64_t) as a JSON array of numbers. */
void out_json_tids(out_writer *w, const vec *ids);

/* Task and resource lookups by id for one rendering: the views follow many
 * edges, and a search through the model per edge would be quadratic. */
typedef struct out_index {
    const aio_model *m;
    vec tasks;     /* out_ix_entry sorted by id */
    vec resources; /* out_ix_entry sorted by id */
} out_index;

typedef struct out_ix_entry {
    uint64_t id;
    size_t pos; /* in the model's vec */
} out_ix_entry;

/* false when out of memory (the writer, if any, is then marked failed). */
bool out_index_build(out_index *ix, const aio_model *m, out_writer *w);
void out_index_free(out_index *ix);
/* Position in m->tasks, or SIZE_MAX when absent. */
size_t out_task_pos(const out_index *ix, uint64_t id);
/* Position in m->resources, or SIZE_MAX when absent. */
size_t out_resource_pos(const out_index *ix, uint64_t id);
const aio_task *out_find_task(const out_index *ix, uint64_t id);
const aio_resource *out_find_resource(const out_index *ix, uint64_t id);

/* Text pieces, appended to b. Names come from the target: escaped
 * (util_escape) so one name cannot break a line or a table; model strings
 * are escaped already, and escaping twice changes nothing. */
void out_clean(sbuf *b, const char *s);
/* "task 'NAME'", or "task 0x..." when it has no name. */
void out_task_ref(sbuf *b, const aio_task *t);
/* " [GET /path from host:port]" for a task serving a request; nothing otherwise. */
void out_task_request(sbuf *b, const aio_task *t);
/* "task 'NAME' (0x...)". */
void out_task_ref_id(sbuf *b, const aio_task *t);
/* "function file:line", the file cut to its last two components when long. */
void out_frame_short(sbuf *b, const aio_frame *f);
/* What a resource is: "Lock 0x...", "gather of 3 (0x...)", "sleep 1.5s
 * left"...; with_detail adds the engine's one short fact in parentheses. */
void out_resource_label(sbuf *b, const aio_resource *r, bool with_detail);
/* What a task waits on: a short phrase for the table ("-" for nothing), or
 * with full the ids, the detail and the awaited task's state as well. */
void out_waits_phrase(sbuf *b, const out_index *ix, const aio_task *t, bool full);
/* The word for a kind when no type name says better ("Lock", "sleep"). */
const char *out_kind_word(aio_kind k);
/* The thread with this native id, NULL when absent (a linear search: a
 * process has a handful of Python threads). */
const aio_thread *out_find_thread(const aio_model *m, int64_t native_id);
/* "waits for concurrent future 0x.. (no timeout)": what a thread blocks on. */
void out_thread_waits(sbuf *b, const aio_thread *th);
/* "work item 0x..: job(), completes concurrent future 0x..". */
void out_thread_work(sbuf *b, const aio_thread *th);
/* The ids a task awaits: what it waits on first, then the rest of its awaits
 * (waits_on once). Start with *i = 0; false when there are no more. */
bool out_await_next(const aio_task *t, size_t *i, uint64_t *id);
/* Display width of UTF-8 text in terminal columns (one per code point). */
size_t out_width(const char *s);
/* "N tasks in M loops (found by X)" and the warnings, one line each. */
void out_header_text(out_writer *w, const aio_model *m);

#endif

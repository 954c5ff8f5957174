/* Replayable memory images for the engine fuzz target, the fault-injection
 * tool and the recorder (tests/fuzz/): the bytes an analysis of a real core
 * read, the core's mappings and threads, the symbol facts the analysis looked
 * up, and the commands it ran, in one flat file. Loading one gives a memory
 * backend and symbol presets for engine_attach_mem; nothing here knows
 * Python. The format is described in tests/fuzz/README.md. */
#ifndef SNARL_FZ_IMAGE_H
#define SNARL_FZ_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../src/engine.h"

#define FZ_MAGIC "SNARLIMG"
#define FZ_MAGIC_LEN 8
#define FZ_VERSION 1

/* Record types: each record is type (1 byte), payload length (4 bytes,
 * little-endian) and the payload. */
enum {
    FZ_REC_TARGET = 1, /* i32 pid, then the executable's path */
    FZ_REC_MAP = 2,    /* u64 start, end, file offset, then the path */
    FZ_REC_TID = 3,    /* i64 thread id */
    FZ_REC_SYM = 4,    /* u8 section, u32 map index, u64 addr, u64 size, then the name */
    FZ_REC_SEG = 5,    /* u64 addr, then the bytes */
    FZ_REC_RUN = 6,    /* u8 command, u8 format, u8 flags (1 all, 2 all_objects), u64 task id */
};

/* Commands a RUN record names, by index. */
extern const char *const fz_commands[];
#define FZ_COMMANDS 6
#define FZ_RUN_ALL 1u
#define FZ_RUN_ALL_OBJECTS 2u

typedef struct fz_run {
    uint8_t command; /* index into fz_commands, any value (checked on use) */
    uint8_t format;  /* snarl_format, any value: the engine checks it */
    uint8_t flags;
    uint64_t task_id;
} fz_run;

/* A loaded image. The memory backend points into the caller's buffer, which
 * must outlive it. */
typedef struct fz_image {
    mem *m;      /* handed to engine_attach_mem, which then owns it */
    vec presets; /* sym_preset; names and paths in `strings` */
    vec strings; /* char *, owned */
    vec runs;    /* fz_run */
} fz_image;

/* Parses data; false (and an image holding nothing to free) when it is not
 * an image. Damaged records inside a valid header are skipped or cut, as a
 * fuzzer's mutations should reach the engine rather than stop here. */
bool fz_image_load(fz_image *img, err_record *err, const uint8_t *data, size_t len);
/* Frees what the image owns; m too unless taken (set img->m = NULL when
 * handing it over). */
void fz_image_free(fz_image *img);
/* The options that attach the image's symbol presets. */
engine_attach_opts fz_image_attach_opts(const fz_image *img);
/* Runs one RUN record on an attached session; returns snarl_run's status. */
int fz_image_run(snarl_session *s, const fz_run *run, snarl_sink sink, void *ctx);

/* Writing images (the recorder). */
void fz_put_header(sbuf *b);
void fz_put_record(sbuf *b, uint8_t type, const void *payload, size_t len);
/* A record whose payload is head (hlen bytes) followed by tail. */
void fz_put_record2(sbuf *b, uint8_t type, const void *head, size_t hlen, const void *tail,
                    size_t tlen);

#endif

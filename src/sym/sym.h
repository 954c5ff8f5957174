/* The symbol layer: which ELF files are mapped where (with their load
 * biases), symbols from .dynsym/.symtab and sections by name, read from the
 * files on disk with elfutils' libelf. Knows nothing of Python objects. */
#ifndef SNARL_SYM_H
#define SNARL_SYM_H

#include <libelf.h>
#include <stdbool.h>
#include <stdint.h>

#include "../mem/mem.h"

typedef struct sym_file {
    const mem_map *map; /* first mapping of the file */
    char *path;         /* as the target names it */
    int fd;             /* -1 until opened */
    Elf *elf;
    bool tried;    /* opening was attempted */
    bool is_exec;  /* ET_EXEC: symbol values are absolute */
    uint64_t bias; /* add to a symbol value to get its address */
} sym_file;

typedef struct sym_hit {
    uint64_t addr;
    uint64_t size;
    const sym_file *file;
} sym_hit;

/* A symbol or section fact recorded from a real target, so that an analysis
 * can be replayed over a memory image without the target's ELF files (the
 * fuzz targets and the fault-injection tool in tests/fuzz/). */
typedef struct sym_preset {
    const char *file; /* the mapped path (mem_map.path) it lives in */
    const char *name;
    bool section; /* a section by name rather than a symbol */
    uint64_t addr, size;
} sym_preset;

/* Sees every lookup that found something (the recorder of those facts). */
typedef void (*sym_observer)(void *ctx, const char *name, bool section, const sym_hit *hit);

typedef struct sym_table {
    mem *m;
    vec files; /* sym_file, one per distinct mapped path */
    /* Set after sym_open, both optional. With presets, lookups answer from
     * them alone and no file is opened; the array is borrowed. */
    const sym_preset *presets;
    size_t npresets;
    sym_observer observe;
    void *observe_ctx;
} sym_table;

err_t sym_open(sym_table *t, mem *m);
void sym_close(sym_table *t);
/* Looks in `only` if given, else in every mapped ELF file (in mapping order). */
bool sym_lookup(sym_table *t, const sym_file *only, const char *name, sym_hit *out);
bool sym_section(sym_table *t, const sym_file *only, const char *name, sym_hit *out);
/* Reads size bytes at a file-relative virtual address straight from the file
 * (used when the target's memory lacks a read-only page). */
err_t sym_read_file(sym_table *t, const sym_file *f, uint64_t addr, void *dst, size_t size);
/* Describes the files searched, for "no Python runtime found" messages. */
void sym_describe_files(sym_table *t, sbuf *out, size_t max_files);

#endif

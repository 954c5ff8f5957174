/* libFuzzer target: symbol and section lookup (src/sym/) and build-id
 * reading on a damaged ELF file: the input is one mapped file of a target,
 * handed over as a memory file. Looks up every symbol and section the engine
 * asks for, reads each hit back from the file, reads the file's build-id
 * from disk and, with the file's bytes placed in target memory as the
 * loader maps them, from memory (what a core's first page of a mapping
 * holds). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fz_image.h"

/* Where the file is mapped in the pretend target. */
#define FZ_SYM_BASE 0x7f0000000000ull

/* What the engine looks up (src/py/py_runtime.c, py_traverse.c,
 * src/aio/aio_layout.c), plus names that are absent. */
static const char *const fz_symbols[] = {
    "_PyRuntime",         "Py_Version",     "PyCode_Type",
    "PyUnicode_Type",     "PyLong_Type",    "PyTuple_Type",
    "PyDict_Type",        "PyCoro_Type",    "_Py_NoneStruct",
    "_PyWeakref_RefType", "PyFrame_Type",   "PyExc_BaseException",
    "PyInit__asyncio",    "no_such_symbol", "",
};
static const char *const fz_sections[] = {".PyRuntime", ".AsyncioDebug", ".text", ".no_such"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz-sym", MFD_CLOEXEC);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
        abort();
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    uint8_t id[MEM_BUILD_ID_MAX];
    mem_file_build_id(path, id, sizeof id);

    err_record err;
    err_clear(&err);
    mem *m = mem_image_open(&err);
    if (!m) {
        abort();
    }
    /* The file as the loader maps it: whole, at the base. */
    uint64_t len = size ? size : 1;
    mem_image_add(m, FZ_SYM_BASE, data, size);
    mem_add_map(m, FZ_SYM_BASE, FZ_SYM_BASE + len, 0, "/usr/lib/libpython-fuzz.so");
    mem_map *mp = VEC_AT(&m->maps, mem_map, 0);
    mp->local = util_strdup(path);
    mp->status = MEM_FILE_UNVERIFIED;
    mem_target_build_id(m, FZ_SYM_BASE, id, sizeof id);

    sym_table t;
    if (sym_open(&t, m) == ERR_OK) {
        for (size_t i = 0; i < ARRAY_LEN(fz_symbols) + ARRAY_LEN(fz_sections); i++) {
            bool section = i >= ARRAY_LEN(fz_symbols);
            const char *name = section ? fz_sections[i - ARRAY_LEN(fz_symbols)] : fz_symbols[i];
            sym_hit h;
            if (section ? sym_section(&t, NULL, name, &h) : sym_lookup(&t, NULL, name, &h)) {
                uint8_t buf[64];
                sym_read_file(&t, h.file, h.addr, buf, sizeof buf);
                sym_read_file(&t, h.file, h.addr + h.size - 1, buf, 1);
            }
        }
        sbuf out;
        sbuf_init(&out);
        sym_describe_files(&t, &out, 8);
        sbuf_free(&out);
    }
    sym_close(&t);
    mem_close(m);
    close(fd);
    return 0;
}

/* Names the files a target maps that this machine could not supply (not
 * found, or a different build), for the message that tells the user to pass
 * --sysroot or the executable: a core from a container or another machine
 * names its files as they were there. */
#include "mem.h"

#include <string.h>

/* Mappings that are never files on disk: devices, anonymous memory files,
 * System V shared memory. Listing them would only hide the real gaps. */
static bool mem_missing_relevant(const mem_map *mp) {
    static const char *const never[] = {"/dev/", "/memfd:", "/SYSV", "/anon_hugepage"};
    if (mp->path[0] != '/' || (mp->status != MEM_FILE_MISSING && mp->status != MEM_FILE_MISMATCH)) {
        return false;
    }
    for (size_t i = 0; i < ARRAY_LEN(never); i++) {
        if (strncmp(mp->path, never[i], strlen(never[i])) == 0) {
            return false;
        }
    }
    return true;
}

/* FNV-1a: distinct paths as set keys (a file has several mappings). */
static uint64_t mem_missing_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    }
    return h ? h : 1;
}

size_t mem_describe_missing(const mem *m, sbuf *out, size_t max_chars) {
    u64set seen;
    u64set_init(&seen);
    size_t count = 0, shown = 0;
    bool full = false;
    for (size_t i = 0; i < m->maps.len; i++) {
        const mem_map *mp = VEC_AT(&m->maps, mem_map, i);
        if (!mem_missing_relevant(mp) || u64set_add(&seen, mem_missing_hash(mp->path)) != 1) {
            continue;
        }
        const char *note = mp->status == MEM_FILE_MISMATCH ? " (a different build)" : "";
        /* Whole names only, in order: the first ones (the executable, the
         * Python library) are the ones that matter. */
        full = full || out->len + strlen(mp->path) + strlen(note) + 2 > max_chars;
        if (!full) {
            sbuf_printf(out, "%s%s%s", shown ? ", " : "", mp->path, note);
            shown++;
        }
        count++;
    }
    if (count > shown) {
        sbuf_printf(out, "%s%zu more", shown ? " and " : "", count - shown);
    }
    u64set_free(&seen);
    return count;
}

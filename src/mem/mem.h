/* The memory layer: one interface to read target memory, whatever the target
 * (live process, ELF core, a debugger's callbacks, a synthetic image), with a
 * page cache in front. It also reports the raw facts every backend knows:
 * which files are mapped where and which threads exist. Knows nothing of
 * Python. Addresses are uint64_t and never dereferenced. */
#ifndef SNARL_MEM_H
#define SNARL_MEM_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/err.h"
#include "../base/util.h"

/* Cache granularity: the kernel maps whole pages, so a page is either wholly
 * readable or not in a live process or a core. */
#define MEM_PAGE_SIZE 4096u
/* Cached pages (4 MiB): covers the working set of a stacks walk and keeps a
 * debugger's memory footprint small. */
#define MEM_CACHE_PAGES 1024u
/* Lines per cache set: a walk that alternates between a few regions whose
 * addresses alias (task objects, their coroutines, the frames in another
 * arena) keeps all of them instead of evicting one for the other, as a
 * direct-mapped cache did. */
#define MEM_CACHE_WAYS 8u
/* Largest cache line (256 KiB): a line's unreadable pages are one bit each
 * in a 64-bit mask. */
#define MEM_LINE_MAX (64u * MEM_PAGE_SIZE)
/* Largest single read the engine ever asks for; anything larger is a bug or
 * a corrupt size from the target. */
#define MEM_READ_MAX (64u << 20)

typedef enum mem_file_status {
    MEM_FILE_OK = 0,     /* found, build-id matches */
    MEM_FILE_UNVERIFIED, /* found, the target recorded no build-id to compare */
    MEM_FILE_MISSING,    /* not found on this machine */
    MEM_FILE_MISMATCH,   /* found, but its build-id differs from the target's */
} mem_file_status;

typedef struct mem_map {
    uint64_t start;
    uint64_t end;
    uint64_t offset; /* file offset mapped at start */
    char *path;      /* as the target names it */
    char *local;     /* where this machine can open it; NULL unless OK/UNVERIFIED */
    mem_file_status status;
} mem_map;

typedef struct mem mem;

typedef struct mem_ops {
    const char *kind; /* "live", "core", "host", "image" */
    /* Reads exactly len bytes at addr into dst, or fails with ERR_READ without
     * recording detail (the caller decides whether it is worth a message). */
    err_t (*read)(mem *m, uint64_t addr, size_t len, void *dst);
    /* Optional: stop and resume the target around an analysis. */
    err_t (*freeze)(mem *m);
    void (*thaw)(mem *m);
    void (*close)(mem *m);
    /* Optional: true when a live target has exited (or is exiting) since it
     * was opened; what mem_gone asks. */
    bool (*exited)(mem *m);
} mem_ops;

struct mem {
    const mem_ops *ops;
    err_record *err;
    /* What the backend knows of the target. */
    int pid;
    char *executable; /* path of the main executable as the target names it */
    vec maps;         /* mem_map, sorted by start */
    vec tids;         /* int64_t thread ids (LWPs), when known */
    /* Page cache: set-associative lines of line_size bytes (a page, or
     * larger blocks when each backend read has a fixed cost), tagged by
     * address, the least recently used line of a set replaced first. */
    size_t line_size;    /* a power of two, MEM_PAGE_SIZE to MEM_LINE_MAX */
    size_t line_count;   /* a power of two */
    size_t cache_ways;   /* lines per set: MEM_CACHE_WAYS, or fewer in a tiny cache */
    unsigned line_shift; /* log2(line_size) */
    size_t set_mask;     /* sets - 1 (line_count / cache_ways, a power of two) */
    uint64_t *cache_tag; /* line address + 1; 0 = empty */
    uint8_t *cache_data;
    uint64_t *cache_bad;  /* per line: bit i set = its page i was not readable */
    uint64_t *cache_used; /* per line: cache_tick at its last use */
    uint64_t cache_tick;
    size_t cache_last; /* the line of the last hit, tried first */
    uint64_t reads, misses;
    /* A live target: a read failed because the process is gone (it exited
     * or was killed while read); what was read is then partial. */
    bool gone;
    /* A live target's start time (clock ticks after boot, /proc/PID/stat),
     * which tells it from a later process given the same PID; 0: unknown. */
    uint64_t start;
    /* Fault injection: fail the nth backend read from now on (0 = never). */
    uint64_t fail_countdown;
    bool injected; /* the last backend failure was injected */
    /* Optional: sees the bytes of every successful mem_read (and of reads the
     * symbol layer serves from files), for recording replayable images. */
    void (*observe)(void *ctx, uint64_t addr, size_t len, const void *data);
    void *observe_ctx;
};

/* Reads through the cache; ERR_READ when any byte is unreadable. */
err_t mem_read(mem *m, uint64_t addr, size_t len, void *dst);
err_t mem_read_u64(mem *m, uint64_t addr, uint64_t *out);
err_t mem_read_u32(mem *m, uint64_t addr, uint32_t *out);
/* Reads a NUL-terminated C string of at most cap-1 bytes; truncates silently. */
err_t mem_read_cstr(mem *m, uint64_t addr, char *dst, size_t cap);
void mem_cache_flush(mem *m);
/* Makes the cache read blocks of `block` bytes (rounded down to a power of
 * two, clamped to MEM_PAGE_SIZE..MEM_LINE_MAX) and hold about cache_bytes,
 * in huge pages if `huge` (util_alloc_huge); empties it. ERR_NOMEM leaves
 * the old cache in place. */
err_t mem_set_block(mem *m, size_t block, size_t cache_bytes, bool huge);
err_t mem_freeze(mem *m);
void mem_thaw(mem *m);
void mem_close(mem *m);
/* Whether a live target has exited, or begun to, since it was opened:
 * asked after any failure (and after each analysis) so that a target that
 * died under the read is reported as such, not as the failure it caused
 * (unreadable memory, no files mapped, a torn structure). False for cores
 * and for targets the backend cannot check. */
bool mem_gone(mem *m);
/* A process on this machine by its /proc entry: its start time (0 when it
 * cannot be read), and whether it has exited or is exiting: no such PID, a
 * different start time (start nonzero: another process took the PID), or
 * no thread left that is not a zombie, not exiting and not bound to die
 * (SIGKILL pending, as a fatal signal or exit_group leaves on each
 * thread before any of them goes). */
uint64_t mem_proc_start(int pid);
bool mem_proc_exited(int pid, uint64_t start);
/* Test hook, NULL in snarl: the live backend calls it with the target's PID
 * at the named points ("open", "maps", "freeze", "seize", "interrupt",
 * "read"), so that a test build can kill the target at a chosen moment
 * (tests/dying/). Nothing in the engine, the CLI or the extension sets it,
 * and nothing reads it from the environment. */
extern void (*mem_live_test_hook)(int pid, const char *point);
/* The mapping containing addr, or NULL. */
const mem_map *mem_find_map(const mem *m, uint64_t addr);

/* Backends. Each returns NULL and fills err on failure. */
mem *mem_live_open(err_record *err, int pid, bool freeze);
mem *mem_core_open(err_record *err, const char *core_path, const char *exe_path,
                   const char *sysroot);
/* True when the core file is shorter than its headers promise. */
bool mem_core_truncated(const mem *m);
/* fd itself when the file is not compressed; for a zstd, xz or lz4 stream
 * (systemd-coredump's formats, told by their magic bytes) a descriptor of an
 * unlinked temporary file holding it unpacked; -1 with err set on failure
 * (a corrupt or truncated stream, past the size limit, no space). */
int mem_unpack(err_record *err, int fd, const char *path);
struct snarl_host;
mem *mem_host_open(err_record *err, const struct snarl_host *host, const char *sysroot);
/* A synthetic image for unit tests: regions copied from caller buffers. */
mem *mem_image_open(err_record *err);
err_t mem_image_add(mem *m, uint64_t addr, const void *data, size_t len);

/* Shared by backends. */
mem *mem_new(err_record *err, const mem_ops *ops, size_t size);
err_t mem_add_map(mem *m, uint64_t start, uint64_t end, uint64_t offset, const char *path);
void mem_sort_maps(mem *m);
/* Resolves each mapping's file on this machine: under sysroot, then as named,
 * then under prefix (e.g. /proc/PID/root); build_id_of(ctx, map) returns the
 * target's recorded build-id for a mapping, if any. */
typedef size_t (*mem_build_id_fn)(mem *m, const mem_map *map, uint8_t *out, size_t cap);
void mem_resolve_files(mem *m, const char *sysroot, const char *prefix, const char *exe_override,
                       mem_build_id_fn build_id_of);
/* Appends to out the distinct paths of mapped files this machine could not
 * supply (not found, or another build), as many as fit in max_chars, then
 * "and N more"; returns how many there are. */
size_t mem_describe_missing(const mem *m, sbuf *out, size_t max_chars);
/* Reads the GNU build-id of an ELF file on disk; returns its length or 0. */
size_t mem_file_build_id(const char *path, uint8_t *out, size_t cap);
/* Reads the GNU build-id from an ELF image mapped in target memory at base. */
size_t mem_target_build_id(mem *m, uint64_t base, uint8_t *out, size_t cap);
/* mem_build_id_fn that reads the mapping's ELF header from target memory. */
size_t mem_map_build_id(mem *m, const mem_map *map, uint8_t *out, size_t cap);

/* Build-ids are 20 bytes (SHA-1) in practice; 64 leaves room for others. */
#define MEM_BUILD_ID_MAX 64

#endif

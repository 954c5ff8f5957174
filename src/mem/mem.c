/* The backend-independent part of the memory layer: the page cache, bounded
 * reads, the mapping list, and finding the target's files on this machine
 * (sysroot, build-id checks). */
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

mem *mem_new(err_record *err, const mem_ops *ops, size_t size) {
    mem *m = util_calloc(1, size);
    if (!m) {
        err_set(err, ERR_NOMEM, NULL);
        return NULL;
    }
    m->ops = ops;
    m->err = err;
    vec_init(&m->maps, sizeof(mem_map));
    vec_init(&m->tids, sizeof(int64_t));
    if (mem_set_block(m, MEM_PAGE_SIZE, (size_t)MEM_CACHE_PAGES * MEM_PAGE_SIZE, false) != ERR_OK) {
        util_free(m);
        return NULL;
    }
    return m;
}

err_t mem_set_block(mem *m, size_t block, size_t cache_bytes, bool huge) {
    size_t line = MEM_PAGE_SIZE;
    while (line < MEM_LINE_MAX && line * 2 <= block) {
        line *= 2;
    }
    /* At least one line; a power of two so that a slot is a mask away. */
    size_t count = 1;
    while (count * 2 * line <= cache_bytes) {
        count *= 2;
    }
    uint64_t *tag = util_calloc(count, sizeof *tag);
    uint64_t *bad = util_calloc(count, sizeof *bad);
    uint64_t *used = util_calloc(count, sizeof *used);
    uint8_t *data = huge ? util_alloc_huge(count * line) : util_alloc(count * line);
    if (!tag || !bad || !used || !data) {
        util_free(tag);
        util_free(bad);
        util_free(used);
        util_free(data);
        return err_set(m->err, ERR_NOMEM, NULL);
    }
    util_free(m->cache_tag);
    util_free(m->cache_bad);
    util_free(m->cache_used);
    util_free(m->cache_data);
    m->cache_tag = tag;
    m->cache_bad = bad;
    m->cache_used = used;
    m->cache_data = data;
    m->line_size = line;
    m->line_count = count;
    m->cache_ways = count < MEM_CACHE_WAYS ? count : MEM_CACHE_WAYS;
    m->line_shift = (unsigned)__builtin_ctzll(line);
    m->set_mask = count / m->cache_ways - 1;
    m->cache_tick = 0;
    m->cache_last = 0;
    return ERR_OK;
}

void mem_close(mem *m) {
    if (!m) {
        return;
    }
    if (m->ops->thaw) {
        m->ops->thaw(m);
    }
    for (size_t i = 0; i < m->maps.len; i++) {
        mem_map *mp = VEC_AT(&m->maps, mem_map, i);
        util_free(mp->path);
        util_free(mp->local);
    }
    vec_free(&m->maps);
    vec_free(&m->tids);
    util_free(m->cache_tag);
    util_free(m->cache_bad);
    util_free(m->cache_used);
    util_free(m->cache_data);
    util_free(m->executable);
    if (m->ops->close) {
        m->ops->close(m); /* frees m */
    } else {
        util_free(m);
    }
}

void mem_cache_flush(mem *m) {
    memset(m->cache_tag, 0, m->line_count * sizeof *m->cache_tag);
}

static err_t mem_backend_read(mem *m, uint64_t addr, size_t len, void *dst) {
    if (m->fail_countdown && --m->fail_countdown == 0) {
        m->injected = true;
        return ERR_READ;
    }
    return m->ops->read(m, addr, len, dst);
}

/* Fills one cache line. A line larger than a page may straddle an unmapped
 * hole: it is then read page by page and the unreadable pages are marked. */
static err_t mem_fill_line(mem *m, size_t slot, uint64_t base) {
    uint8_t *data = m->cache_data + slot * m->line_size;
    m->misses++;
    m->cache_tag[slot] = 0;
    if (mem_backend_read(m, base, m->line_size, data) == ERR_OK) {
        m->cache_bad[slot] = 0;
        m->cache_tag[slot] = base + 1;
        return ERR_OK;
    }
    if (m->injected || m->line_size == MEM_PAGE_SIZE) {
        return ERR_READ;
    }
    size_t pages = m->line_size / MEM_PAGE_SIZE;
    uint64_t bad = 0;
    for (size_t i = 0; i < pages; i++) {
        if (mem_backend_read(m, base + i * MEM_PAGE_SIZE, MEM_PAGE_SIZE,
                             data + i * MEM_PAGE_SIZE) != ERR_OK) {
            if (m->injected) {
                return ERR_READ;
            }
            bad |= (uint64_t)1 << i;
        }
    }
    m->cache_bad[slot] = bad;
    m->cache_tag[slot] = base + 1;
    return ERR_OK;
}

/* Part of one line through the cache; bytes in a page that cannot be read
 * whole are read exactly, uncached, since cores and debuggers may expose
 * partial pages. */
/* The cache line holding base, or the line of its set to fill with it: an
 * empty one, else the least recently used. */
static size_t mem_find_line(mem *m, uint64_t base, bool *hit) {
    if (m->cache_tag[m->cache_last] == base + 1) {
        *hit = true;
        return m->cache_last;
    }
    size_t ways = m->cache_ways;
    size_t first = ((size_t)(base >> m->line_shift) & m->set_mask) * ways;
    size_t victim = first;
    uint64_t oldest = UINT64_MAX;
    for (size_t w = first; w < first + ways; w++) {
        if (m->cache_tag[w] == base + 1) {
            *hit = true;
            return w;
        }
        /* An empty way counts as used at tick 0: it is taken first. */
        uint64_t used = m->cache_tag[w] ? m->cache_used[w] : 0;
        if (used < oldest) {
            oldest = used;
            victim = w;
        }
    }
    *hit = false;
    return victim;
}

static err_t mem_read_line_part(mem *m, uint64_t base, size_t off, size_t n, uint8_t *dst) {
    bool hit;
    size_t slot = mem_find_line(m, base, &hit);
    if (!hit && mem_fill_line(m, slot, base) != ERR_OK) {
        if (m->injected) {
            /* An injected failure must reach the caller, not be retried. */
            m->injected = false;
            return ERR_READ;
        }
        return mem_backend_read(m, base + off, n, dst);
    }
    m->cache_used[slot] = ++m->cache_tick;
    m->cache_last = slot;
    uint64_t first = off / MEM_PAGE_SIZE, last = (off + n - 1) / MEM_PAGE_SIZE;
    uint64_t span = (last - first == 63 ? ~(uint64_t)0 : ((uint64_t)2 << (last - first)) - 1)
                    << first;
    if (m->cache_bad[slot] & span) {
        return mem_backend_read(m, base + off, n, dst);
    }
    memcpy(dst, m->cache_data + slot * m->line_size + off, n);
    return ERR_OK;
}

static err_t mem_read_cached(mem *m, uint64_t addr, size_t len, void *dst) {
    m->reads++;
    if (len == 0) {
        return ERR_OK;
    }
    if (len > MEM_READ_MAX || addr + len < addr) {
        return ERR_READ;
    }
    /* Large reads bypass the cache: they are object bodies read once. */
    if (len > 4 * MEM_PAGE_SIZE && len > m->line_size) {
        return mem_backend_read(m, addr, len, dst);
    }
    uint8_t *out = dst;
    while (len > 0) {
        uint64_t base = addr & ~(uint64_t)(m->line_size - 1);
        size_t off = (size_t)(addr - base);
        size_t n = m->line_size - off;
        if (n > len) {
            n = len;
        }
        err_t e = mem_read_line_part(m, base, off, n, out);
        if (e != ERR_OK) {
            return e;
        }
        addr += n;
        out += n;
        len -= n;
    }
    return ERR_OK;
}

/* The hot path, taken by most reads: all of it inside one cached line
 * whose pages were all readable. The line of the last hit first, then the
 * rest of its set: reading a task goes back and forth between the lines of
 * its object, its coroutine and what it waits on, and four in ten of its
 * reads took the general path's calls though their line was cached. A
 * million tasks make a hundred million reads. */
static inline bool mem_read_fast(mem *m, uint64_t addr, size_t len, void *dst) {
    uint64_t base = addr & ~(uint64_t)(m->line_size - 1);
    size_t off = (size_t)(addr - base), slot = m->cache_last;
    if (len > m->line_size - off || m->observe) {
        return false;
    }
    if (m->cache_tag[slot] != base + 1) {
        size_t first = ((size_t)(base >> m->line_shift) & m->set_mask) * m->cache_ways;
        size_t end = first + m->cache_ways;
        for (slot = first; slot < end && m->cache_tag[slot] != base + 1; slot++) {
        }
        if (slot == end) {
            return false;
        }
        m->cache_used[slot] = ++m->cache_tick;
        m->cache_last = slot;
    }
    if (m->cache_bad[slot]) {
        return false;
    }
    m->reads++;
    memcpy(dst, m->cache_data + slot * m->line_size + off, len);
    return true;
}

/* Every other read: the general path, and what observes reads. */
static err_t mem_read_slow(mem *m, uint64_t addr, size_t len, void *dst) {
    err_t e = mem_read_cached(m, addr, len, dst);
    if (e == ERR_OK && len > 0 && m->observe) {
        m->observe(m->observe_ctx, addr, len, dst);
    }
    return e;
}

err_t mem_read(mem *m, uint64_t addr, size_t len, void *dst) {
    return len > 0 && mem_read_fast(m, addr, len, dst) ? ERR_OK : mem_read_slow(m, addr, len, dst);
}

err_t mem_read_u64(mem *m, uint64_t addr, uint64_t *out) {
    uint8_t b[8];
    err_t e = mem_read_fast(m, addr, sizeof b, b) ? ERR_OK : mem_read_slow(m, addr, sizeof b, b);
    if (e == ERR_OK) {
        *out = rd_u64(b, 0);
    }
    return e;
}

err_t mem_read_u32(mem *m, uint64_t addr, uint32_t *out) {
    uint8_t b[4];
    err_t e = mem_read(m, addr, sizeof b, b);
    if (e == ERR_OK) {
        *out = rd_u32(b, 0);
    }
    return e;
}

err_t mem_read_cstr(mem *m, uint64_t addr, char *dst, size_t cap) {
    if (cap == 0) {
        return ERR_OK;
    }
    size_t i = 0;
    while (i + 1 < cap) {
        /* Read up to the page end at a time: a C string may end just before
         * an unmapped page. */
        uint64_t a = addr + i;
        size_t chunk = MEM_PAGE_SIZE - (size_t)(a % MEM_PAGE_SIZE);
        if (chunk > cap - 1 - i) {
            chunk = cap - 1 - i;
        }
        err_t e = mem_read(m, a, chunk, dst + i);
        if (e != ERR_OK) {
            /* The readable bytes may end mid-page (a cut core, a debugger
             * exposing part of a page): go byte by byte to the NUL. */
            for (size_t k = 0; k < chunk; k++) {
                if (mem_read(m, a + k, 1, dst + i + k) != ERR_OK) {
                    dst[i + k] = '\0';
                    return ERR_READ;
                }
                if (dst[i + k] == '\0') {
                    return ERR_OK;
                }
            }
        }
        void *nul = memchr(dst + i, '\0', chunk);
        if (nul) {
            return ERR_OK;
        }
        i += chunk;
    }
    dst[cap - 1] = '\0';
    return ERR_OK;
}

err_t mem_freeze(mem *m) {
    return m->ops->freeze ? m->ops->freeze(m) : ERR_OK;
}

bool mem_gone(mem *m) {
    if (m->ops->exited) {
        /* The backend's look at the process decides, not a failed read alone
         * (a process whose main thread exited on its own refuses reads too). */
        m->gone = m->ops->exited(m);
    }
    return m->gone;
}

void mem_thaw(mem *m) {
    if (m->ops->thaw) {
        m->ops->thaw(m);
    }
}

err_t mem_add_map(mem *m, uint64_t start, uint64_t end, uint64_t offset, const char *path) {
    mem_map *mp = vec_push(&m->maps);
    if (!mp) {
        return err_set(m->err, ERR_NOMEM, NULL);
    }
    mp->start = start;
    mp->end = end;
    mp->offset = offset;
    mp->status = MEM_FILE_MISSING;
    mp->path = util_strdup(path);
    if (!mp->path) {
        m->maps.len--;
        return err_set(m->err, ERR_NOMEM, NULL);
    }
    return ERR_OK;
}

static int mem_map_cmp(const void *a, const void *b) {
    const mem_map *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

void mem_sort_maps(mem *m) {
    if (m->maps.len > 1) {
        qsort(m->maps.data, m->maps.len, sizeof(mem_map), mem_map_cmp);
    }
}

const mem_map *mem_find_map(const mem *m, uint64_t addr) {
    size_t lo = 0, hi = m->maps.len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const mem_map *mp = VEC_AT(&m->maps, mem_map, mid);
        if (addr < mp->start) {
            hi = mid;
        } else if (addr >= mp->end) {
            lo = mid + 1;
        } else {
            return mp;
        }
    }
    return NULL;
}

/* Longest build-id note we accept, and the longest note segment we scan for
 * it: build-id notes sit in small PT_NOTE segments near the file start. */
#define MEM_NOTE_SCAN_MAX 65536u

static size_t mem_find_build_id_note(const uint8_t *p, size_t n, uint8_t *out, size_t cap) {
    size_t off = 0;
    while (off + 12 <= n) {
        uint32_t namesz = rd_u32(p, off), descsz = rd_u32(p, off + 4), type = rd_u32(p, off + 8);
        size_t name_off = off + 12;
        size_t desc_off = name_off + ((namesz + 3u) & ~3u);
        size_t next = desc_off + ((descsz + 3u) & ~3u);
        if (namesz > n || descsz > n || next > n || next <= off) {
            return 0;
        }
        if (type == 3 /* NT_GNU_BUILD_ID */ && namesz == 4 && memcmp(p + name_off, "GNU", 4) == 0 &&
            descsz > 0 && descsz <= cap) {
            memcpy(out, p + desc_off, descsz);
            return descsz;
        }
        off = next;
    }
    return 0;
}

size_t mem_file_build_id(const char *path, uint8_t *out, size_t cap) {
    if (elf_version(EV_CURRENT) == EV_NONE) {
        return 0;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    size_t found = 0;
    Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    size_t phnum = 0;
    if (elf && elf_kind(elf) == ELF_K_ELF && elf_getphdrnum(elf, &phnum) == 0) {
        for (size_t i = 0; i < phnum && !found; i++) {
            GElf_Phdr ph;
            if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_NOTE ||
                ph.p_filesz > MEM_NOTE_SCAN_MAX) {
                continue;
            }
            Elf_Data *d = elf_getdata_rawchunk(elf, (int64_t)ph.p_offset, ph.p_filesz, ELF_T_BYTE);
            if (d && d->d_buf) {
                found = mem_find_build_id_note(d->d_buf, d->d_size, out, cap);
            }
        }
    }
    if (elf) {
        elf_end(elf);
    }
    close(fd);
    return found;
}

size_t mem_target_build_id(mem *m, uint64_t base, uint8_t *out, size_t cap) {
    uint8_t eh[64];
    if (mem_read(m, base, sizeof eh, eh) != ERR_OK || memcmp(eh, ELFMAG, SELFMAG) != 0 ||
        eh[EI_CLASS] != ELFCLASS64) {
        return 0;
    }
    uint16_t type = rd_u16(eh, 16);
    uint64_t phoff = rd_u64(eh, 32);
    uint16_t phentsize = rd_u16(eh, 54), phnum = rd_u16(eh, 56);
    if (phentsize != sizeof(Elf64_Phdr) || phnum == 0 || phnum > 128 || phoff > MEM_PAGE_SIZE) {
        return 0;
    }
    Elf64_Phdr ph[128];
    if (mem_read(m, base + phoff, (size_t)phnum * sizeof(Elf64_Phdr), ph) != ERR_OK) {
        return 0;
    }
    /* ET_DYN images are linked at 0 (or their first PT_LOAD); ET_EXEC at
     * absolute addresses. */
    uint64_t first_load = UINT64_MAX;
    for (unsigned i = 0; i < phnum; i++) {
        if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0) {
            first_load = ph[i].p_vaddr;
            break;
        }
    }
    if (first_load == UINT64_MAX) {
        return 0;
    }
    uint64_t bias = type == ET_EXEC ? 0 : base - (first_load & ~(uint64_t)(MEM_PAGE_SIZE - 1));
    for (unsigned i = 0; i < phnum; i++) {
        if (ph[i].p_type != PT_NOTE || ph[i].p_memsz == 0 || ph[i].p_memsz > MEM_NOTE_SCAN_MAX) {
            continue;
        }
        uint8_t *buf = util_alloc(ph[i].p_memsz);
        if (!buf) {
            return 0;
        }
        size_t found = 0;
        if (mem_read(m, ph[i].p_vaddr + bias, ph[i].p_memsz, buf) == ERR_OK) {
            found = mem_find_build_id_note(buf, ph[i].p_memsz, out, cap);
        }
        util_free(buf);
        if (found) {
            return found;
        }
    }
    return 0;
}

size_t mem_map_build_id(mem *m, const mem_map *map, uint8_t *out, size_t cap) {
    return mem_target_build_id(m, map->start, out, cap);
}

static bool mem_is_regular_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *mem_basename(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* A file is usable when it exists and, if the target recorded a build-id,
 * carries the same one. */
static mem_file_status mem_check_candidate(const char *cand, const uint8_t *want, size_t want_len) {
    if (!mem_is_regular_file(cand)) {
        return MEM_FILE_MISSING;
    }
    if (want_len == 0) {
        return MEM_FILE_UNVERIFIED;
    }
    uint8_t have[MEM_BUILD_ID_MAX];
    size_t have_len = mem_file_build_id(cand, have, sizeof have);
    if (have_len == want_len && memcmp(have, want, want_len) == 0) {
        return MEM_FILE_OK;
    }
    return MEM_FILE_MISMATCH;
}

void mem_resolve_files(mem *m, const char *sysroot, const char *prefix, const char *exe_override,
                       mem_build_id_fn build_id_of) {
    char cand[4096];
    /* Several mappings share a file; resolve each path once, at the mapping
     * with file offset 0 (where the ELF header, and so the build-id, is). */
    for (size_t i = 0; i < m->maps.len; i++) {
        mem_map *mp = VEC_AT(&m->maps, mem_map, i);
        if (mp->path[0] != '/') {
            continue;
        }
        const mem_map *first = NULL;
        for (size_t j = 0; j < i; j++) {
            const mem_map *q = VEC_AT(&m->maps, mem_map, j);
            if (strcmp(q->path, mp->path) == 0) {
                first = q;
                break;
            }
        }
        if (first) {
            mp->status = first->status;
            mp->local = first->local ? util_strdup(first->local) : NULL;
            continue;
        }
        uint8_t want[MEM_BUILD_ID_MAX];
        size_t want_len = 0;
        for (size_t j = i; j < m->maps.len && !want_len; j++) {
            const mem_map *q = VEC_AT(&m->maps, mem_map, j);
            if (q->offset == 0 && strcmp(q->path, mp->path) == 0 && build_id_of) {
                want_len = build_id_of(m, q, want, sizeof want);
            }
        }
        const char *tries[4];
        char buf_sys[4096], buf_pre[4096];
        size_t ntries = 0;
        bool is_exe = m->executable && strcmp(m->executable, mp->path) == 0;
        if (is_exe && exe_override) {
            tries[ntries++] = exe_override;
        } else if (exe_override &&
                   strcmp(mem_basename(exe_override), mem_basename(mp->path)) == 0) {
            tries[ntries++] = exe_override;
        }
        if (sysroot &&
            snprintf(buf_sys, sizeof buf_sys, "%s%s", sysroot, mp->path) < (int)sizeof buf_sys) {
            tries[ntries++] = buf_sys;
        }
        tries[ntries++] = mp->path;
        if (prefix &&
            snprintf(buf_pre, sizeof buf_pre, "%s%s", prefix, mp->path) < (int)sizeof buf_pre) {
            tries[ntries++] = buf_pre;
        }
        mp->status = MEM_FILE_MISSING;
        for (size_t t = 0; t < ntries; t++) {
            mem_file_status st = mem_check_candidate(tries[t], want, want_len);
            if (st == MEM_FILE_OK || st == MEM_FILE_UNVERIFIED) {
                snprintf(cand, sizeof cand, "%s", tries[t]);
                mp->local = util_strdup(cand);
                mp->status = mp->local ? st : MEM_FILE_MISSING;
                break;
            }
            if (st == MEM_FILE_MISMATCH) {
                mp->status = MEM_FILE_MISMATCH;
            }
        }
    }
}

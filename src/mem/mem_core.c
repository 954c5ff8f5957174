/* ELF core backend (elfutils libelf): PT_LOAD segments with p_filesz against
 * p_memsz, reads split across segments and clamped to the real file size;
 * notes for threads (NT_PRSTATUS), the process (NT_PRPSINFO) and mapped files
 * (NT_FILE). Pages the core left out of file-backed mappings are read from
 * those files when their build-id matches. */
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

/* Segments and NT_FILE entries we accept; a real core has a few thousand. */
#define CORE_SEGMENTS_MAX 1000000
#define CORE_FILES_MAX 1000000
/* Cache line and size for a core, as for a live process (mem_live.c): one
 * pread of 16 KiB costs about what one of 4 KiB does, and the neighbours of
 * an object are read next; the gdb front end, with 128 KiB blocks, was
 * faster on a core than the CLI with 4 KiB pages. 4 MiB as live: 16 MiB
 * took 12 MB more for no gain on a 100k-task core. */
#define CORE_BLOCK (4u * MEM_PAGE_SIZE)
#define CORE_CACHE_BYTES (4u << 20)
/* Note segments larger than this are damage, not data (NT_FILE of a process
 * with a million mappings stays well below it). */
#define CORE_NOTE_MAX (256u << 20)

#define CORE_HINT_NOT_CORE                                                                         \
    "pass a PID, or a core file (from gcore, systemd-coredump or the kernel)"

typedef struct core_seg {
    uint64_t vaddr, memsz, offset, filesz; /* filesz already clamped to the file */
} core_seg;

typedef struct mem_core {
    mem base;
    int fd;
    Elf *elf;
    uint64_t file_size;
    vec segs; /* core_seg sorted by vaddr */
    bool truncated;
    /* Open descriptors of mapped files, parallel to base.maps (-1: none). */
    int *map_fds;
} mem_core;

static const core_seg *core_find_seg(const mem_core *c, uint64_t addr) {
    size_t lo = 0, hi = c->segs.len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const core_seg *s = VEC_AT(&c->segs, core_seg, mid);
        if (addr < s->vaddr) {
            hi = mid;
        } else if (addr - s->vaddr >= s->memsz) {
            lo = mid + 1;
        } else {
            return s;
        }
    }
    return NULL;
}

static bool core_pread_all(int fd, void *dst, size_t len, uint64_t off) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)dst + done, len - done, (off_t)(off + done));
        if (n <= 0) {
            return false;
        }
        done += (size_t)n;
    }
    return true;
}

/* Bytes the core does not hold, from the mapped file itself. */
static bool core_read_from_file(mem_core *c, uint64_t addr, size_t len, void *dst) {
    mem *m = &c->base;
    const mem_map *mp = mem_find_map(m, addr);
    if (!mp || !mp->local || addr + len > mp->end) {
        return false;
    }
    size_t idx = (size_t)(mp - VEC_AT(&m->maps, mem_map, 0));
    if (c->map_fds[idx] == -1) {
        /* Reuse a descriptor already open for the same file. */
        int fd = -2;
        for (size_t j = 0; j < m->maps.len; j++) {
            const mem_map *q = VEC_AT(&m->maps, mem_map, j);
            if (c->map_fds[j] >= 0 && q->local && strcmp(q->local, mp->local) == 0) {
                fd = c->map_fds[j];
                break;
            }
        }
        if (fd == -2) {
            fd = open(mp->local, O_RDONLY | O_CLOEXEC);
        }
        c->map_fds[idx] = fd < 0 ? -2 : fd;
    }
    if (c->map_fds[idx] < 0) {
        return false;
    }
    return core_pread_all(c->map_fds[idx], dst, len, mp->offset + (addr - mp->start));
}

/* First segment starting above addr, or NULL. */
static const core_seg *core_next_seg(const mem_core *c, uint64_t addr) {
    size_t lo = 0, hi = c->segs.len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (VEC_AT(&c->segs, core_seg, mid)->vaddr <= addr) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < c->segs.len ? VEC_AT(&c->segs, core_seg, lo) : NULL;
}

static err_t core_read(mem *m, uint64_t addr, size_t len, void *dst) {
    mem_core *c = (mem_core *)m;
    uint8_t *out = dst;
    while (len > 0) {
        const core_seg *s = core_find_seg(c, addr);
        size_t n;
        if (!s) {
            /* gcore leaves read-only file mappings out altogether (the kernel
             * writes them with p_filesz 0): only the mapped file has them. */
            const core_seg *next = core_next_seg(c, addr);
            n = next && next->vaddr - addr < len ? (size_t)(next->vaddr - addr) : len;
            if (!c->map_fds || !core_read_from_file(c, addr, n, out)) {
                return ERR_READ;
            }
        } else {
            uint64_t in_seg = addr - s->vaddr;
            n = (size_t)(s->memsz - in_seg < len ? s->memsz - in_seg : len);
            if (in_seg < s->filesz) {
                size_t from_core = (size_t)(s->filesz - in_seg < n ? s->filesz - in_seg : n);
                if (!core_pread_all(c->fd, out, from_core, s->offset + in_seg)) {
                    return ERR_READ;
                }
                n = from_core;
            } else if (!c->map_fds || !core_read_from_file(c, addr, n, out)) {
                return ERR_READ;
            }
        }
        addr += n;
        out += n;
        len -= n;
    }
    return ERR_OK;
}

static void core_close(mem *m) {
    mem_core *c = (mem_core *)m;
    if (c->map_fds) {
        for (size_t i = 0; i < m->maps.len; i++) {
            if (c->map_fds[i] < 0) {
                continue;
            }
            /* Descriptors are shared between mappings of one file. */
            int fd = c->map_fds[i];
            for (size_t j = i; j < m->maps.len; j++) {
                if (c->map_fds[j] == fd) {
                    c->map_fds[j] = -1;
                }
            }
            close(fd);
        }
        util_free(c->map_fds);
    }
    vec_free(&c->segs);
    if (c->elf) {
        elf_end(c->elf);
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    util_free(c);
}

static const mem_ops core_ops = {
    .kind = "core",
    .read = core_read,
    .close = core_close,
};

static int core_seg_cmp(const void *a, const void *b) {
    const core_seg *x = a, *y = b;
    return x->vaddr < y->vaddr ? -1 : x->vaddr > y->vaddr;
}

static err_t core_parse_nt_file(mem_core *c, const uint8_t *d, size_t n) {
    mem *m = &c->base;
    if (n < 16) {
        return err_set(m->err, ERR_CORE, "NT_FILE note too short (%zu bytes)", n);
    }
    uint64_t count = rd_u64(d, 0), page = rd_u64(d, 8);
    if (count > CORE_FILES_MAX || count > (n - 16) / 24 || page == 0 || page > (1u << 30)) {
        return err_set(m->err, ERR_CORE, "NT_FILE note damaged (count %llu, page size %llu)",
                       (unsigned long long)count, (unsigned long long)page);
    }
    size_t names = 16 + (size_t)count * 24;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t start = rd_u64(d, 16 + i * 24), end = rd_u64(d, 24 + i * 24);
        uint64_t pgoff = rd_u64(d, 32 + i * 24);
        const char *name = (const char *)d + names;
        const char *nul = names < n ? memchr(name, '\0', n - names) : NULL;
        if (!nul) {
            return err_set(m->err, ERR_CORE, "NT_FILE note damaged (name %llu runs off the end)",
                           (unsigned long long)i);
        }
        if (end > start && pgoff <= UINT64_MAX / page) {
            err_t e = mem_add_map(m, start, end, pgoff * page, name);
            if (e != ERR_OK) {
                return e;
            }
        }
        names += (size_t)(nul - name) + 1;
    }
    return ERR_OK;
}

/* x86-64 layouts of the note payloads we read (linux/elfcore.h). */
#define CORE_PRSTATUS_PID_OFF 32
#define CORE_PRPSINFO_SIZE 136
#define CORE_PRPSINFO_PID_OFF 24
#define CORE_AUXV_AT_PHDR 3
#define CORE_AUXV_AT_ENTRY 9

static err_t core_parse_notes(mem_core *c, uint64_t *entry) {
    mem *m = &c->base;
    size_t phnum;
    elf_getphdrnum(c->elf, &phnum);
    bool have_file = false;
    for (size_t i = 0; i < phnum; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(c->elf, (int)i, &ph) || ph.p_type != PT_NOTE) {
            continue;
        }
        if (ph.p_filesz > CORE_NOTE_MAX) {
            return err_set(m->err, ERR_CORE, "the core's note segment claims %llu bytes",
                           (unsigned long long)ph.p_filesz);
        }
        if (ph.p_offset > c->file_size || ph.p_filesz > c->file_size - ph.p_offset) {
            /* gdb writes the notes last, so any cut loses them. */
            return err_set(m->err, ERR_CORE,
                           "the core is truncated: its notes (threads, mapped files) end at byte "
                           "%llu but the file has %llu",
                           (unsigned long long)(ph.p_offset + ph.p_filesz),
                           (unsigned long long)c->file_size);
        }
        Elf_Data *data =
            elf_getdata_rawchunk(c->elf, (int64_t)ph.p_offset, ph.p_filesz, ELF_T_NHDR);
        if (!data) {
            return err_set(m->err, ERR_CORE, "unreadable note segment: %s", elf_errmsg(-1));
        }
        size_t off = 0, name_off, desc_off;
        GElf_Nhdr nh;
        while (off < data->d_size &&
               (off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) != 0) {
            const uint8_t *desc = (const uint8_t *)data->d_buf + desc_off;
            bool core_name = nh.n_namesz == 5 &&
                             memcmp((const char *)data->d_buf + name_off, "CORE", 5) == 0;
            if (!core_name) {
                continue;
            }
            if (nh.n_type == NT_PRSTATUS && nh.n_descsz >= CORE_PRSTATUS_PID_OFF + 4) {
                int64_t *slot = vec_push(&m->tids);
                if (!slot) {
                    return err_set(m->err, ERR_NOMEM, NULL);
                }
                *slot = (int32_t)rd_u32(desc, CORE_PRSTATUS_PID_OFF);
            } else if (nh.n_type == NT_PRPSINFO && nh.n_descsz >= CORE_PRPSINFO_SIZE) {
                m->pid = (int32_t)rd_u32(desc, CORE_PRPSINFO_PID_OFF);
            } else if (nh.n_type == NT_FILE && !have_file) {
                err_t e = core_parse_nt_file(c, desc, nh.n_descsz);
                if (e != ERR_OK) {
                    return e;
                }
                have_file = true;
            } else if (nh.n_type == NT_AUXV) {
                for (size_t k = 0; k + 16 <= nh.n_descsz; k += 16) {
                    if (rd_u64(desc, k) == CORE_AUXV_AT_ENTRY) {
                        *entry = rd_u64(desc, k + 8);
                    }
                }
            }
        }
    }
    if (m->pid == 0 && m->tids.len > 0) {
        m->pid = (int)*VEC_AT(&m->tids, int64_t, 0);
    }
    return ERR_OK;
}

mem *mem_core_open(err_record *err, const char *core_path, const char *exe_path,
                   const char *sysroot) {
    if (elf_version(EV_CURRENT) == EV_NONE) {
        err_set(err, ERR_IO, "libelf is out of date");
        return NULL;
    }
    int fd = open(core_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set(err, errno == EACCES ? ERR_PERM : ERR_NO_FILE, "cannot open %s: %s", core_path,
                strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        err_set(err, ERR_USAGE, "%s is not a regular file", core_path);
        return NULL;
    }
    /* systemd-coredump keeps cores compressed: read them unpacked. */
    int plain = mem_unpack(err, fd, core_path);
    if (plain != fd) {
        close(fd);
        if (plain < 0 || fstat(plain, &st) != 0) {
            if (plain >= 0) {
                close(plain);
                err_set(err, ERR_IO, "cannot read %s unpacked: %s", core_path, strerror(errno));
            }
            return NULL;
        }
        fd = plain;
    }
    mem_core *c = (mem_core *)mem_new(err, &core_ops, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    mem *m = &c->base;
    c->fd = fd;
    c->file_size = (uint64_t)st.st_size;
    vec_init(&c->segs, sizeof(core_seg));
    err_t e = ERR_OK;
    c->elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    GElf_Ehdr eh;
    if (!c->elf || elf_kind(c->elf) != ELF_K_ELF || !gelf_getehdr(c->elf, &eh)) {
        e = err_set(err, ERR_CORE, "%s is not an ELF file", core_path);
        err->hint = CORE_HINT_NOT_CORE;
    } else if (eh.e_type != ET_CORE) {
        e = err_set(err, ERR_CORE, "%s is an ELF file but not a core dump", core_path);
        err->hint = CORE_HINT_NOT_CORE;
    } else if (eh.e_machine != EM_X86_64 || eh.e_ident[EI_CLASS] != ELFCLASS64) {
        e = err_set(err, ERR_UNSUPPORTED, "%s is not an x86-64 core", core_path);
    }
    size_t phnum = 0;
    if (e == ERR_OK && (elf_getphdrnum(c->elf, &phnum) != 0 || phnum > CORE_SEGMENTS_MAX)) {
        e = err_set(err, ERR_CORE, "%s has a damaged program header table", core_path);
    }
    for (size_t i = 0; e == ERR_OK && i < phnum; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(c->elf, (int)i, &ph)) {
            e = err_set(err, ERR_CORE, "program header %zu of %s is unreadable", i, core_path);
            break;
        }
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0 || ph.p_vaddr + ph.p_memsz < ph.p_vaddr) {
            continue;
        }
        core_seg *s = vec_push(&c->segs);
        if (!s) {
            e = err_set(err, ERR_NOMEM, NULL);
            break;
        }
        s->vaddr = ph.p_vaddr;
        s->memsz = ph.p_memsz;
        s->offset = ph.p_offset;
        s->filesz = ph.p_filesz < ph.p_memsz ? ph.p_filesz : ph.p_memsz;
        /* A truncated core keeps its headers: clamp to what the file holds. */
        if (s->offset >= c->file_size) {
            if (s->filesz) {
                c->truncated = true;
            }
            s->filesz = 0;
        } else if (s->filesz > c->file_size - s->offset) {
            s->filesz = c->file_size - s->offset;
            c->truncated = true;
        }
    }
    if (e == ERR_OK && c->segs.len == 0) {
        e = err_set(err, ERR_CORE, "%s holds no memory segments", core_path);
    }
    uint64_t entry = 0;
    if (e == ERR_OK) {
        qsort(c->segs.data, c->segs.len, sizeof(core_seg), core_seg_cmp);
        e = core_parse_notes(c, &entry);
    }
    if (e == ERR_OK && m->maps.len == 0) {
        e = err_set(err, ERR_CORE, "%s has no NT_FILE note: the mapped files are unknown",
                    core_path);
    }
    if (e != ERR_OK) {
        mem_close(m);
        return NULL;
    }
    mem_sort_maps(m);
    /* The main executable is the file mapping that holds the entry point. */
    const mem_map *exe = entry ? mem_find_map(m, entry) : NULL;
    if (exe) {
        m->executable = util_strdup(exe->path);
    }
    mem_resolve_files(m, sysroot, NULL, exe_path, mem_map_build_id);
    c->map_fds = util_alloc(m->maps.len * sizeof *c->map_fds);
    if (!c->map_fds) {
        err_set(err, ERR_NOMEM, NULL);
        mem_close(m);
        return NULL;
    }
    for (size_t i = 0; i < m->maps.len; i++) {
        c->map_fds[i] = -1;
    }
    /* Without the larger cache, mem_new's page cache still works. */
    if (mem_set_block(m, CORE_BLOCK, CORE_CACHE_BYTES, true) != ERR_OK) {
        err_clear(err);
    }
    return m;
}

bool mem_core_truncated(const mem *m) {
    return m->ops == &core_ops && ((const mem_core *)m)->truncated;
}

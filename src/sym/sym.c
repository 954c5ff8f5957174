/* Symbol and section lookup over the target's mapped ELF files. Files are
 * opened lazily, once; load biases come from the mapping of the first
 * PT_LOAD segment (ET_DYN) or are zero (ET_EXEC, e.g. Debian's python3.X). */
#include "sym.h"

#include <fcntl.h>
#include <gelf.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Distinct files we track; a process with more mapped files than this is
 * not a Python interpreter we can help with anyway. */
#define SYM_FILES_MAX 65536

err_t sym_open(sym_table *t, mem *m) {
    memset(t, 0, sizeof *t);
    t->m = m;
    vec_init(&t->files, sizeof(sym_file));
    if (elf_version(EV_CURRENT) == EV_NONE) {
        return err_set(m->err, ERR_IO, "libelf is out of date");
    }
    for (size_t i = 0; i < m->maps.len && t->files.len < SYM_FILES_MAX; i++) {
        const mem_map *mp = VEC_AT(&m->maps, mem_map, i);
        bool seen = false;
        for (size_t j = 0; j < t->files.len && !seen; j++) {
            seen = strcmp(VEC_AT(&t->files, sym_file, j)->path, mp->path) == 0;
        }
        if (seen) {
            continue;
        }
        sym_file *f = vec_push(&t->files);
        if (!f) {
            return err_set(m->err, ERR_NOMEM, NULL);
        }
        f->map = mp;
        f->path = mp->path;
        f->fd = -1;
    }
    return ERR_OK;
}

void sym_close(sym_table *t) {
    for (size_t i = 0; i < t->files.len; i++) {
        sym_file *f = VEC_AT(&t->files, sym_file, i);
        if (f->elf) {
            elf_end(f->elf);
        }
        if (f->fd >= 0) {
            close(f->fd);
        }
    }
    vec_free(&t->files);
}

/* Lowest mapping address of a file at the given file offset. */
static bool sym_map_at_offset(const mem *m, const char *path, uint64_t off, uint64_t *start) {
    for (size_t i = 0; i < m->maps.len; i++) {
        const mem_map *mp = VEC_AT(&m->maps, mem_map, i);
        if (mp->offset == off && strcmp(mp->path, path) == 0) {
            *start = mp->start;
            return true;
        }
    }
    return false;
}

static bool sym_file_ready(sym_table *t, sym_file *f) {
    if (f->tried) {
        return f->elf != NULL;
    }
    f->tried = true;
    if (!f->map->local) {
        return false;
    }
    f->fd = open(f->map->local, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        return false;
    }
    f->elf = elf_begin(f->fd, ELF_C_READ_MMAP, NULL);
    GElf_Ehdr eh;
    if (!f->elf || elf_kind(f->elf) != ELF_K_ELF || !gelf_getehdr(f->elf, &eh)) {
        goto fail;
    }
    f->is_exec = eh.e_type == ET_EXEC;
    if (f->is_exec) {
        return true;
    }
    size_t phnum;
    if (elf_getphdrnum(f->elf, &phnum) != 0) {
        goto fail;
    }
    for (size_t i = 0; i < phnum; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(f->elf, (int)i, &ph) || ph.p_type != PT_LOAD) {
            continue;
        }
        uint64_t page = MEM_PAGE_SIZE - 1;
        uint64_t start;
        if (!sym_map_at_offset(t->m, f->path, ph.p_offset & ~page, &start)) {
            goto fail;
        }
        f->bias = start - (ph.p_vaddr & ~page);
        return true;
    }
fail:
    if (f->elf) {
        elf_end(f->elf);
        f->elf = NULL;
    }
    close(f->fd);
    f->fd = -1;
    return false;
}

static bool sym_lookup_in(sym_file *f, const char *name, sym_hit *out) {
    Elf_Scn *scn = NULL;
    size_t nlen = strlen(name);
    while ((scn = elf_nextscn(f->elf, scn)) != NULL) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB) ||
            sh.sh_entsize == 0) {
            continue;
        }
        Elf_Data *d = elf_getdata(scn, NULL);
        if (!d) {
            continue;
        }
        size_t n = d->d_size / sh.sh_entsize;
        for (size_t i = 0; i < n; i++) {
            GElf_Sym s;
            if (!gelf_getsym(d, (int)i, &s) || s.st_shndx == SHN_UNDEF || s.st_value == 0) {
                continue;
            }
            const char *sn = elf_strptr(f->elf, sh.sh_link, s.st_name);
            if (sn && strncmp(sn, name, nlen) == 0 && (sn[nlen] == '\0' || sn[nlen] == '@')) {
                out->addr = s.st_value + f->bias;
                out->size = s.st_size;
                out->file = f;
                return true;
            }
        }
    }
    return false;
}

/* A recorded fact for name, in `only` if given; the first one wins, as the
 * first file in mapping order does for real lookups. */
static bool sym_preset_find(sym_table *t, const sym_file *only, const char *name, bool section,
                            sym_hit *out) {
    for (size_t k = 0; k < t->npresets; k++) {
        const sym_preset *p = &t->presets[k];
        if (p->section != section || !p->name || !p->file || strcmp(p->name, name) != 0) {
            continue;
        }
        for (size_t i = 0; i < t->files.len; i++) {
            const sym_file *f = VEC_AT(&t->files, sym_file, i);
            if ((!only || f == only) && strcmp(f->path, p->file) == 0) {
                out->addr = p->addr;
                out->size = p->size;
                out->file = f;
                return true;
            }
        }
    }
    return false;
}

static bool sym_found(sym_table *t, const char *name, bool section, const sym_hit *hit) {
    if (t->observe) {
        t->observe(t->observe_ctx, name, section, hit);
    }
    return true;
}

bool sym_lookup(sym_table *t, const sym_file *only, const char *name, sym_hit *out) {
    if (t->presets) {
        return sym_preset_find(t, only, name, false, out);
    }
    for (size_t i = 0; i < t->files.len; i++) {
        sym_file *f = VEC_AT(&t->files, sym_file, i);
        if ((only && f != only) || !sym_file_ready(t, f)) {
            continue;
        }
        if (sym_lookup_in(f, name, out)) {
            return sym_found(t, name, false, out);
        }
    }
    return false;
}

bool sym_section(sym_table *t, const sym_file *only, const char *name, sym_hit *out) {
    if (t->presets) {
        return sym_preset_find(t, only, name, true, out);
    }
    for (size_t i = 0; i < t->files.len; i++) {
        sym_file *f = VEC_AT(&t->files, sym_file, i);
        if ((only && f != only) || !sym_file_ready(t, f)) {
            continue;
        }
        size_t shstrndx;
        if (elf_getshdrstrndx(f->elf, &shstrndx) != 0) {
            continue;
        }
        Elf_Scn *scn = NULL;
        while ((scn = elf_nextscn(f->elf, scn)) != NULL) {
            GElf_Shdr sh;
            const char *sn;
            if (gelf_getshdr(scn, &sh) && sh.sh_addr != 0 &&
                (sn = elf_strptr(f->elf, shstrndx, sh.sh_name)) && strcmp(sn, name) == 0) {
                out->addr = sh.sh_addr + f->bias;
                out->size = sh.sh_size;
                out->file = f;
                return sym_found(t, name, true, out);
            }
        }
    }
    return false;
}

err_t sym_read_file(sym_table *t, const sym_file *f, uint64_t addr, void *dst, size_t size) {
    if (!f->elf) {
        return ERR_READ;
    }
    uint64_t vaddr = addr - f->bias;
    size_t phnum;
    if (elf_getphdrnum(f->elf, &phnum) != 0) {
        return ERR_READ;
    }
    for (size_t i = 0; i < phnum; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(f->elf, (int)i, &ph) || ph.p_type != PT_LOAD || vaddr < ph.p_vaddr ||
            vaddr - ph.p_vaddr >= ph.p_filesz || size > ph.p_filesz - (vaddr - ph.p_vaddr)) {
            continue;
        }
        uint64_t off = ph.p_offset + (vaddr - ph.p_vaddr);
        size_t done = 0;
        while (done < size) {
            ssize_t n = pread(f->fd, (char *)dst + done, size - done, (off_t)(off + done));
            if (n <= 0) {
                return ERR_READ;
            }
            done += (size_t)n;
        }
        if (t->m->observe) {
            t->m->observe(t->m->observe_ctx, addr, size, dst);
        }
        return ERR_OK;
    }
    return ERR_READ;
}

void sym_describe_files(sym_table *t, sbuf *out, size_t max_files) {
    size_t shown = 0;
    for (size_t i = 0; i < t->files.len; i++) {
        const sym_file *f = VEC_AT(&t->files, sym_file, i);
        /* A file that was found but could not be read as ELF (a locale
         * archive, a cache) cannot hold a runtime: naming it would push the
         * executable's libraries out of the list. */
        if (f->tried && !f->elf &&
            (f->map->status == MEM_FILE_OK || f->map->status == MEM_FILE_UNVERIFIED)) {
            continue;
        }
        if (shown == max_files) {
            sbuf_printf(out, ", ... (%zu files in all)", (size_t)t->files.len);
            break;
        }
        const char *st = f->map->status == MEM_FILE_MISSING    ? " (not found)"
                         : f->map->status == MEM_FILE_MISMATCH ? " (build-id differs)"
                                                               : "";
        sbuf_printf(out, "%s%s%s", shown ? ", " : "", f->path, st);
        shown++;
    }
}

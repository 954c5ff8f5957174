/* Compressed cores as systemd-coredump stores them (zstd, xz, lz4 frames),
 * recognised by their magic bytes, not their names: the stream is unpacked
 * into an unlinked temporary file, which the ELF core backend then reads like
 * any core. Knows nothing of ELF. */
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lz4frame.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

/* Largest core we unpack: far above the cores of real Python processes, and
 * a stop for a corrupt or hostile stream that would fill the disk (zstd and
 * lz4 expand runs of zeros thousands of times over). */
#define MEM_UNPACK_MAX (64ull << 30)
/* Compressed bytes read at a time, and unpacked bytes written at a time. */
#define MEM_UNPACK_IN_CHUNK (1u << 20)
#define MEM_UNPACK_OUT_CHUNK (1u << 20)
/* Memory the xz decoder may use: xz -9 needs 65 MiB; a header asking for
 * more than this is damage, not a real dictionary. */
#define MEM_UNPACK_XZ_MEMLIMIT (1ull << 30)
/* Zero blocks of this size are skipped, not written: cores are mostly
 * zeros, and a sparse temporary file costs no disk for them. */
#define MEM_UNPACK_HOLE 4096u

typedef enum unpack_codec { UNPACK_NONE, UNPACK_ZSTD, UNPACK_XZ, UNPACK_LZ4 } unpack_codec;

static const char *const mem_unpack_names[] = {"", "zstd", "xz", "lz4"};

typedef struct unpack_job {
    err_record *err;
    const char *path;
    unpack_codec codec;
    int in_fd;
    int out_fd;
    uint64_t out_off;
    uint8_t *in;
    uint8_t *out;
} unpack_job;

static unpack_codec mem_unpack_codec(const uint8_t *b, size_t n) {
    static const uint8_t zstd[] = {0x28, 0xb5, 0x2f, 0xfd};
    static const uint8_t xz[] = {0xfd, '7', 'z', 'X', 'Z', 0x00};
    static const uint8_t lz4[] = {0x04, 0x22, 0x4d, 0x18};
    if (n >= sizeof zstd && memcmp(b, zstd, sizeof zstd) == 0) {
        return UNPACK_ZSTD;
    }
    if (n >= sizeof xz && memcmp(b, xz, sizeof xz) == 0) {
        return UNPACK_XZ;
    }
    if (n >= sizeof lz4 && memcmp(b, lz4, sizeof lz4) == 0) {
        return UNPACK_LZ4;
    }
    return UNPACK_NONE;
}

static err_t mem_unpack_corrupt(unpack_job *j, const char *detail) {
    err_set(j->err, ERR_CORE, "%s: the %s stream is corrupt (%s)", j->path,
            mem_unpack_names[j->codec], detail);
    j->err->hint = "the compressed core is damaged; fetch it again (coredumpctl dump -o FILE)";
    return ERR_CORE;
}

static err_t mem_unpack_truncated(unpack_job *j) {
    err_set(j->err, ERR_CORE, "%s: the %s stream ends early: the compressed core is truncated",
            j->path, mem_unpack_names[j->codec]);
    j->err->hint = "the compressed core is incomplete; fetch it again (coredumpctl dump -o FILE)";
    return ERR_CORE;
}

/* Appends n unpacked bytes, leaving holes for blocks of zeros. */
static err_t mem_unpack_emit(unpack_job *j, const uint8_t *p, size_t n) {
    if (n > MEM_UNPACK_MAX - j->out_off) {
        return err_set(j->err, ERR_CORE,
                       "%s unpacks to more than %llu GiB (the limit): a damaged %s stream", j->path,
                       MEM_UNPACK_MAX >> 30, mem_unpack_names[j->codec]);
    }
    size_t done = 0;
    while (done < n) {
        size_t k = n - done < MEM_UNPACK_HOLE ? n - done : MEM_UNPACK_HOLE;
        const uint8_t *b = p + done;
        bool zero = b[0] == 0 && memcmp(b, b + 1, k - 1) == 0;
        for (size_t w = 0; !zero && w < k;) {
            ssize_t r = pwrite(j->out_fd, b + w, k - w, (off_t)(j->out_off + done + w));
            if (r <= 0) {
                return err_set(j->err, ERR_IO, "cannot unpack %s into a temporary file: %s",
                               j->path, r < 0 ? strerror(errno) : "no space");
            }
            w += (size_t)r;
        }
        done += k;
    }
    j->out_off += n;
    return ERR_OK;
}

/* Reads the next chunk of the compressed file; 0 at its end. */
static err_t mem_unpack_read(unpack_job *j, size_t *n) {
    for (;;) {
        ssize_t r = read(j->in_fd, j->in, MEM_UNPACK_IN_CHUNK);
        if (r >= 0) {
            *n = (size_t)r;
            return ERR_OK;
        }
        if (errno != EINTR) {
            return err_set(j->err, ERR_IO, "cannot read %s: %s", j->path, strerror(errno));
        }
    }
}

static err_t mem_unpack_zstd(unpack_job *j) {
    ZSTD_DStream *ds = ZSTD_createDStream();
    if (!ds) {
        return err_set(j->err, ERR_NOMEM, NULL);
    }
    err_t e = ERR_OK;
    size_t left = 1; /* what ZSTD says the current frame still needs; 0: at a frame end */
    size_t n = 0;
    bool eof = false;
    while (e == ERR_OK && !eof) {
        if ((e = mem_unpack_read(j, &n)) != ERR_OK) {
            break;
        }
        eof = n == 0;
        ZSTD_inBuffer in = {j->in, n, 0};
        /* At the end, drain what the decoder still holds (empty input);
         * at a frame's end it holds nothing, and a call would start the
         * next frame. */
        bool more = !eof || left != 0;
        while (e == ERR_OK && (in.pos < in.size || more)) {
            ZSTD_outBuffer out = {j->out, MEM_UNPACK_OUT_CHUNK, 0};
            left = ZSTD_decompressStream(ds, &out, &in);
            if (ZSTD_isError(left)) {
                e = mem_unpack_corrupt(j, ZSTD_getErrorName(left));
                break;
            }
            e = mem_unpack_emit(j, j->out, out.pos);
            /* A full buffer may hide more output, unless the frame ended
             * (0: decoded and flushed); a call then would start the next. */
            more = out.pos == out.size && left != 0;
        }
    }
    ZSTD_freeDStream(ds);
    if (e == ERR_OK && left != 0) {
        e = mem_unpack_truncated(j);
    }
    return e;
}

static err_t mem_unpack_xz(unpack_job *j) {
    lzma_stream st = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&st, MEM_UNPACK_XZ_MEMLIMIT, LZMA_CONCATENATED) != LZMA_OK) {
        return err_set(j->err, ERR_NOMEM, NULL);
    }
    err_t e = ERR_OK;
    lzma_action action = LZMA_RUN;
    st.next_out = j->out;
    st.avail_out = MEM_UNPACK_OUT_CHUNK;
    for (;;) {
        if (st.avail_in == 0 && action == LZMA_RUN) {
            size_t n = 0;
            if ((e = mem_unpack_read(j, &n)) != ERR_OK) {
                break;
            }
            st.next_in = j->in;
            st.avail_in = n;
            if (n == 0) {
                action = LZMA_FINISH;
            }
        }
        lzma_ret r = lzma_code(&st, action);
        if (st.avail_out == 0 || r == LZMA_STREAM_END) {
            if ((e = mem_unpack_emit(j, j->out, MEM_UNPACK_OUT_CHUNK - st.avail_out)) != ERR_OK) {
                break;
            }
            st.next_out = j->out;
            st.avail_out = MEM_UNPACK_OUT_CHUNK;
        }
        if (r == LZMA_STREAM_END) {
            break;
        }
        if (r == LZMA_OK) {
            continue;
        }
        if (r == LZMA_BUF_ERROR && action == LZMA_FINISH) {
            e = mem_unpack_truncated(j);
        } else if (r == LZMA_MEM_ERROR) {
            e = err_set(j->err, ERR_NOMEM, NULL);
        } else if (r == LZMA_MEMLIMIT_ERROR) {
            e = mem_unpack_corrupt(j, "it asks for a dictionary beyond any xz preset");
        } else {
            e = mem_unpack_corrupt(j, r == LZMA_FORMAT_ERROR    ? "not an xz stream"
                                      : r == LZMA_OPTIONS_ERROR ? "unsupported options"
                                                                : "bad data or checksum");
        }
        break;
    }
    lzma_end(&st);
    return e;
}

static err_t mem_unpack_lz4(unpack_job *j) {
    LZ4F_dctx *dc = NULL;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&dc, LZ4F_VERSION))) {
        return err_set(j->err, ERR_NOMEM, NULL);
    }
    err_t e = ERR_OK;
    size_t hint = 1; /* 0: the last frame ended */
    for (;;) {
        size_t n = 0;
        if ((e = mem_unpack_read(j, &n)) != ERR_OK || n == 0) {
            break;
        }
        size_t pos = 0;
        bool more = true;
        /* The decoder may hold output back when the buffer is full: call it
         * until the input is used up and the output buffer was not filled. */
        while (e == ERR_OK && (pos < n || more)) {
            size_t out_n = MEM_UNPACK_OUT_CHUNK, in_n = n - pos;
            hint = LZ4F_decompress(dc, j->out, &out_n, j->in + pos, &in_n, NULL);
            if (LZ4F_isError(hint)) {
                e = mem_unpack_corrupt(j, LZ4F_getErrorName(hint));
                break;
            }
            pos += in_n;
            e = mem_unpack_emit(j, j->out, out_n);
            more = out_n == MEM_UNPACK_OUT_CHUNK && hint != 0;
        }
        if (e != ERR_OK) {
            break;
        }
    }
    LZ4F_freeDecompressionContext(dc);
    if (e == ERR_OK && hint != 0) {
        e = mem_unpack_truncated(j);
    }
    return e;
}

/* An unlinked file in $TMPDIR (disk, not memory: a core may be gigabytes);
 * an anonymous memory file where the file system has no O_TMPFILE. */
static int mem_unpack_tmpfile(void) {
    const char *dir = getenv("TMPDIR");
    int fd = open(dir && *dir ? dir : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        fd = memfd_create("snarl-core", MFD_CLOEXEC);
    }
    return fd;
}

int mem_unpack(err_record *err, int fd, const char *path) {
    uint8_t magic[8];
    ssize_t got = pread(fd, magic, sizeof magic, 0);
    unpack_codec codec = mem_unpack_codec(magic, got > 0 ? (size_t)got : 0);
    if (codec == UNPACK_NONE) {
        return fd;
    }
    unpack_job j = {.err = err, .path = path, .codec = codec, .in_fd = fd, .out_fd = -1};
    j.in = util_alloc(MEM_UNPACK_IN_CHUNK);
    j.out = util_alloc(MEM_UNPACK_OUT_CHUNK);
    err_t e = ERR_OK;
    if (!j.in || !j.out) {
        e = err_set(err, ERR_NOMEM, NULL);
    } else if ((j.out_fd = mem_unpack_tmpfile()) < 0) {
        e = err_set(err, ERR_IO, "cannot make a temporary file to unpack %s into: %s", path,
                    strerror(errno));
    } else if (lseek(fd, 0, SEEK_SET) != 0) {
        e = err_set(err, ERR_IO, "cannot read %s: %s", path, strerror(errno));
    } else if (codec == UNPACK_ZSTD) {
        e = mem_unpack_zstd(&j);
    } else if (codec == UNPACK_XZ) {
        e = mem_unpack_xz(&j);
    } else {
        e = mem_unpack_lz4(&j);
    }
    /* Trailing zero blocks were skipped: the size makes them a hole. */
    if (e == ERR_OK && ftruncate(j.out_fd, (off_t)j.out_off) != 0) {
        e = err_set(err, ERR_IO, "cannot unpack %s into a temporary file: %s", path,
                    strerror(errno));
    }
    util_free(j.in);
    util_free(j.out);
    if (e != ERR_OK) {
        if (j.out_fd >= 0) {
            close(j.out_fd);
        }
        return -1;
    }
    return j.out_fd;
}

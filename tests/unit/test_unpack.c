/* mem_unpack: systemd-coredump's compressed cores (zstd, xz, lz4 frames)
 * unpacked byte for byte, several frames in a row as one stream, holes for
 * zeros keeping the size, anything else passed through untouched, and a
 * truncated or corrupt stream an error that says which. */
#include <fcntl.h>
#include <lz4frame.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "../../src/mem/mem.h"
#include "unit.h"

/* The test data: a pattern, a long run of zeros (a hole once unpacked) and
 * a pattern again, ending in zeros (the size must still count them). */
#define UNPACK_DATA_LEN (3u << 20)

static uint8_t *unpack_data(void) {
    uint8_t *d = calloc(1, UNPACK_DATA_LEN);
    for (size_t i = 0; d && i < UNPACK_DATA_LEN; i++) {
        bool zero = (i >= (1u << 20) && i < (2u << 20)) || i >= UNPACK_DATA_LEN - 5000;
        d[i] = zero ? 0 : (uint8_t)(i * 131 + (i >> 12));
    }
    return d;
}

typedef enum { CODEC_ZSTD, CODEC_XZ, CODEC_LZ4 } codec;
static const char *const codec_names[] = {"zstd", "xz", "lz4"};

/* One frame of src in codec; the caller frees it. */
static uint8_t *pack(codec c, const uint8_t *src, size_t n, size_t *out_len) {
    size_t cap = c == CODEC_ZSTD ? ZSTD_compressBound(n)
                 : c == CODEC_XZ ? lzma_stream_buffer_bound(n)
                                 : LZ4F_compressFrameBound(n, NULL);
    uint8_t *out = malloc(cap);
    if (!out) {
        return NULL;
    }
    size_t len = 0;
    if (c == CODEC_ZSTD) {
        len = ZSTD_compress(out, cap, src, n, 1);
        len = ZSTD_isError(len) ? 0 : len;
    } else if (c == CODEC_XZ) {
        if (lzma_easy_buffer_encode(0, LZMA_CHECK_CRC64, NULL, src, n, out, &len, cap) != LZMA_OK) {
            len = 0;
        }
    } else {
        len = LZ4F_compressFrame(out, cap, src, n, NULL);
        len = LZ4F_isError(len) ? 0 : len;
    }
    if (len == 0) {
        free(out);
        return NULL;
    }
    *out_len = len;
    return out;
}

/* An fd of a scratch file holding data (removed at once). */
static int scratch(const void *data, size_t n) {
    char path[4096];
    const char *dir = unit_tmpdir();
    if (!CHECK(dir != NULL)) {
        return -1;
    }
    snprintf(path, sizeof path, "%s/unpack.bin", dir);
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(data, 1, n, f) == n;
    if (f) {
        ok = fclose(f) == 0 && ok;
    }
    int fd = ok ? open(path, O_RDONLY) : -1;
    unlink(path);
    return fd;
}

static bool same_as(int fd, const uint8_t *want, size_t n, size_t times) {
    struct stat st;
    if (!CHECK(fstat(fd, &st) == 0) || !CHECK_EQ(st.st_size, (long long)(n * times))) {
        return false;
    }
    uint8_t *got = malloc(n);
    bool ok = got != NULL;
    for (size_t k = 0; ok && k < times; k++) {
        ok = pread(fd, got, n, (off_t)(k * n)) == (ssize_t)n && memcmp(got, want, n) == 0;
    }
    free(got);
    return CHECK(ok);
}

TEST(unpack_each_codec_byte_for_byte_and_frames_in_a_row) {
    uint8_t *data = unpack_data();
    if (!CHECK(data != NULL)) {
        return;
    }
    for (codec c = CODEC_ZSTD; c <= CODEC_LZ4; c++) {
        unit_ctx("%s", codec_names[c]);
        size_t len = 0;
        uint8_t *packed = pack(c, data, UNPACK_DATA_LEN, &len);
        if (!CHECK(packed != NULL)) {
            continue;
        }
        uint8_t *twice = malloc(2 * len);
        if (CHECK(twice != NULL)) {
            memcpy(twice, packed, len);
            memcpy(twice + len, packed, len);
        }
        for (size_t times = 1; twice && times <= 2; times++) {
            err_record err;
            err_clear(&err);
            int in = scratch(twice, len * times);
            int out = in >= 0 ? mem_unpack(&err, in, "core.bin") : -1;
            if (CHECK(out >= 0) && CHECK(out != in)) {
                same_as(out, data, UNPACK_DATA_LEN, times);
            }
            if (out >= 0 && out != in) {
                close(out);
            }
            if (in >= 0) {
                close(in);
            }
        }
        free(twice);
        free(packed);
    }
    free(data);
}

TEST(unpack_leaves_an_uncompressed_file_alone) {
    static const char elf[] = "\177ELF and the rest of a core";
    err_record err;
    err_clear(&err);
    int in = scratch(elf, sizeof elf);
    CHECK(in >= 0 && mem_unpack(&err, in, "core") == in);
    CHECK_ERR(err.code, ERR_OK);
    if (in >= 0) {
        close(in);
    }
}

TEST(unpack_says_truncated_or_corrupt) {
    uint8_t *data = unpack_data();
    if (!CHECK(data != NULL)) {
        return;
    }
    for (codec c = CODEC_ZSTD; c <= CODEC_LZ4; c++) {
        size_t len = 0;
        uint8_t *packed = pack(c, data, UNPACK_DATA_LEN, &len);
        if (!CHECK(packed != NULL)) {
            continue;
        }
        for (int damage = 0; damage < 2; damage++) {
            unit_ctx("%s, %s", codec_names[c], damage ? "corrupt" : "truncated");
            size_t n = damage ? len : len / 2;
            if (damage) {
                /* Past the frame header: the data blocks (and checksums). */
                for (size_t i = 64; i < len; i += 251) {
                    packed[i] ^= 0x5a;
                }
            }
            err_record err;
            err_clear(&err);
            int in = scratch(packed, n);
            CHECK(in >= 0 && mem_unpack(&err, in, "core.bin") == -1);
            CHECK_ERR(err.code, ERR_CORE);
            CHECK(strstr(err.msg, "core.bin") != NULL);
            CHECK(strstr(err.msg, codec_names[c]) != NULL);
            CHECK(strstr(err.msg, damage ? "corrupt" : "truncated") != NULL);
            if (in >= 0) {
                close(in);
            }
        }
        free(packed);
    }
    free(data);
}

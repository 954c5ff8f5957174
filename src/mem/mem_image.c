/* Synthetic memory image for unit tests: a handful of regions copied from
 * test buffers, so readers can be exercised on hand-made (and hand-broken)
 * objects without a real process. */
#include "mem.h"

#include <stdlib.h>

typedef struct image_region {
    uint64_t addr;
    size_t len;
    uint8_t *data;
} image_region;

typedef struct mem_image {
    mem base;
    vec regions;
} mem_image;

static err_t image_read(mem *m, uint64_t addr, size_t len, void *dst) {
    mem_image *im = (mem_image *)m;
    uint8_t *out = dst;
    while (len > 0) {
        const image_region *hit = NULL;
        for (size_t i = 0; i < im->regions.len; i++) {
            const image_region *r = VEC_AT(&im->regions, image_region, i);
            if (addr >= r->addr && addr - r->addr < r->len) {
                hit = r;
                break;
            }
        }
        if (!hit) {
            return ERR_READ;
        }
        size_t off = (size_t)(addr - hit->addr);
        size_t n = hit->len - off < len ? hit->len - off : len;
        memcpy(out, hit->data + off, n);
        out += n;
        addr += n;
        len -= n;
    }
    return ERR_OK;
}

static void image_close(mem *m) {
    mem_image *im = (mem_image *)m;
    for (size_t i = 0; i < im->regions.len; i++) {
        util_free(VEC_AT(&im->regions, image_region, i)->data);
    }
    vec_free(&im->regions);
    util_free(im);
}

static const mem_ops image_ops = {
    .kind = "image",
    .read = image_read,
    .close = image_close,
};

mem *mem_image_open(err_record *err) {
    mem_image *im = (mem_image *)mem_new(err, &image_ops, sizeof *im);
    if (im) {
        vec_init(&im->regions, sizeof(image_region));
    }
    return im ? &im->base : NULL;
}

err_t mem_image_add(mem *m, uint64_t addr, const void *data, size_t len) {
    mem_image *im = (mem_image *)m;
    image_region *r = vec_push(&im->regions);
    if (!r) {
        return ERR_NOMEM;
    }
    r->data = util_alloc(len);
    if (!r->data) {
        im->regions.len--;
        return ERR_NOMEM;
    }
    memcpy(r->data, data, len);
    r->addr = addr;
    r->len = len;
    mem_cache_flush(m);
    return ERR_OK;
}

/*
 * Baseline for the tracker benchmarks: the flat-bitmap algorithm of QEMU's
 * RamBlockAttributes, implemented from its behavioural description
 * (reference/qemu-ram-block-attributes.md sections 2-3), not from QEMU's code.
 *
 * - one bit per page, 1 = populated (shared), in unsigned long words;
 * - find_next_bit / find_next_zero_bit scan word by word;
 * - a state change validates the range, computes is_discarded / is_populated,
 *   changes an all-one-state range in bulk with one notification per
 *   listener, and walks a mixed range bit by bit with one notification per
 *   changed page;
 * - is_populated is one find_next_zero_bit; replay_populated walks runs with
 *   find_next_bit / find_next_zero_bit (G1 iterator), clipping to the section.
 *
 * Usage: flat-bitmap <pages> <page-size> <setup.ops> <measure.ops> <repeats>
 * An ops file is a sequence of records { u8 kind; u8 pad[7]; u64 offset; u64 size; }
 * with kind 0 = to shared, 1 = to private, 2 = is_populated, 3 = replay populated.
 * For each repeat the bitmap is rebuilt from setup.ops (not timed) and
 * measure.ops is timed. Prints one JSON object: the median time per op and
 * checksums of the work done and of the final state, which the TypeScript side
 * must reproduce.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BITS_PER_LONG 64
#define BIT_WORD(n) ((n) / BITS_PER_LONG)

typedef struct {
    uint8_t kind;
    uint8_t pad[7];
    uint64_t offset;
    uint64_t size;
} op_t;

typedef struct listener listener_t;
struct listener {
    int (*notify_populate)(listener_t *l, uint64_t offset, uint64_t size);
    void (*notify_discard)(listener_t *l, uint64_t offset, uint64_t size);
    uint64_t start, size;      /* registered section */
    uint64_t populates, discards, bytes;
};

typedef struct {
    unsigned long *bitmap;
    uint64_t nbits;
    uint64_t block_size;
    uint64_t region_size;
    listener_t *listeners;
    int nlisteners;
} attrs_t;

static volatile int trace_enabled; /* a disabled trace point, checked as QEMU does */

/* --- bitmap helpers ------------------------------------------------------- */

static uint64_t find_next_bit(const unsigned long *addr, uint64_t size, uint64_t offset)
{
    if (offset >= size)
        return size;
    uint64_t w = BIT_WORD(offset);
    unsigned long tmp = addr[w] & (~0UL << (offset % BITS_PER_LONG));
    while (!tmp) {
        if (++w * BITS_PER_LONG >= size)
            return size;
        tmp = addr[w];
    }
    uint64_t r = w * BITS_PER_LONG + __builtin_ctzl(tmp);
    return r < size ? r : size;
}

static uint64_t find_next_zero_bit(const unsigned long *addr, uint64_t size, uint64_t offset)
{
    if (offset >= size)
        return size;
    uint64_t w = BIT_WORD(offset);
    unsigned long tmp = ~addr[w] & (~0UL << (offset % BITS_PER_LONG));
    while (!tmp) {
        if (++w * BITS_PER_LONG >= size)
            return size;
        tmp = ~addr[w];
    }
    uint64_t r = w * BITS_PER_LONG + __builtin_ctzl(tmp);
    return r < size ? r : size;
}

static void bitmap_set_range(unsigned long *map, uint64_t start, uint64_t nr)
{
    uint64_t end = start + nr;
    while (start < end && start % BITS_PER_LONG) {
        map[BIT_WORD(start)] |= 1UL << (start % BITS_PER_LONG);
        start++;
    }
    while (start + BITS_PER_LONG <= end) {
        map[BIT_WORD(start)] = ~0UL;
        start += BITS_PER_LONG;
    }
    while (start < end) {
        map[BIT_WORD(start)] |= 1UL << (start % BITS_PER_LONG);
        start++;
    }
}

static void bitmap_clear_range(unsigned long *map, uint64_t start, uint64_t nr)
{
    uint64_t end = start + nr;
    while (start < end && start % BITS_PER_LONG) {
        map[BIT_WORD(start)] &= ~(1UL << (start % BITS_PER_LONG));
        start++;
    }
    while (start + BITS_PER_LONG <= end) {
        map[BIT_WORD(start)] = 0;
        start += BITS_PER_LONG;
    }
    while (start < end) {
        map[BIT_WORD(start)] &= ~(1UL << (start % BITS_PER_LONG));
        start++;
    }
}

static inline int test_bit(uint64_t nr, const unsigned long *addr)
{
    return (addr[BIT_WORD(nr)] >> (nr % BITS_PER_LONG)) & 1;
}

/* --- listeners ------------------------------------------------------------ */

static int count_populate(listener_t *l, uint64_t offset, uint64_t size)
{
    (void)offset;
    l->populates++;
    l->bytes += size;
    return 0;
}

static void count_discard(listener_t *l, uint64_t offset, uint64_t size)
{
    (void)offset;
    l->discards++;
    l->bytes -= size;
}

/* Intersects [offset, offset + size) with the listener's section. */
static int clip(const listener_t *l, uint64_t *offset, uint64_t *size)
{
    uint64_t s = *offset > l->start ? *offset : l->start;
    uint64_t e1 = *offset + *size, e2 = l->start + l->size;
    uint64_t e = e1 < e2 ? e1 : e2;
    if (e <= s)
        return 0;
    *offset = s;
    *size = e - s;
    return 1;
}

static int notify_populate(attrs_t *a, uint64_t offset, uint64_t size)
{
    for (int i = 0; i < a->nlisteners; i++) {
        listener_t *l = &a->listeners[i];
        uint64_t o = offset, s = size;
        if (!clip(l, &o, &s))
            continue;
        int ret = l->notify_populate(l, o, s);
        if (ret)
            return ret;
    }
    return 0;
}

static void notify_discard(attrs_t *a, uint64_t offset, uint64_t size)
{
    for (int i = 0; i < a->nlisteners; i++) {
        listener_t *l = &a->listeners[i];
        uint64_t o = offset, s = size;
        if (clip(l, &o, &s))
            l->notify_discard(l, o, s);
    }
}

/* --- the algorithm -------------------------------------------------------- */

static int is_valid_range(const attrs_t *a, uint64_t offset, uint64_t size)
{
    if (offset % a->block_size || size % a->block_size)
        return 0;
    if (offset + size <= offset)
        return 0;
    if (offset + size > a->region_size)
        return 0;
    return 1;
}

static int state_change(attrs_t *a, uint64_t offset, uint64_t size, int to_discard)
{
    const uint64_t bs = a->block_size;
    const uint64_t first_bit = offset / bs;
    const uint64_t nbits = size / bs;
    const uint64_t last_bit = first_bit + nbits - 1;
    const int is_discarded = find_next_bit(a->bitmap, last_bit + 1, first_bit) > last_bit;
    const int is_populated = find_next_zero_bit(a->bitmap, last_bit + 1, first_bit) > last_bit;
    int ret = 0;

    if (!is_valid_range(a, offset, size))
        return -EINVAL;
    if (trace_enabled)
        fprintf(stderr, "state_change %lx %lx\n", (unsigned long)offset, (unsigned long)size);

    if (to_discard) {
        if (is_discarded) {
            /* Already private */
        } else if (is_populated) {
            bitmap_clear_range(a->bitmap, first_bit, nbits);
            notify_discard(a, offset, size);
        } else {
            /* Mixture: one block at a time */
            for (uint64_t bit = first_bit; bit < first_bit + nbits; bit++) {
                if (!test_bit(bit, a->bitmap))
                    continue;
                a->bitmap[BIT_WORD(bit)] &= ~(1UL << (bit % BITS_PER_LONG));
                notify_discard(a, bit * bs, bs);
            }
        }
    } else {
        if (is_populated) {
            /* Already shared */
        } else if (is_discarded) {
            bitmap_set_range(a->bitmap, first_bit, nbits);
            ret = notify_populate(a, offset, size);
        } else {
            for (uint64_t bit = first_bit; bit < first_bit + nbits; bit++) {
                if (test_bit(bit, a->bitmap))
                    continue;
                a->bitmap[BIT_WORD(bit)] |= 1UL << (bit % BITS_PER_LONG);
                ret = notify_populate(a, bit * bs, bs);
                if (ret)
                    break;
            }
        }
    }
    return ret;
}

static int is_populated(const attrs_t *a, uint64_t offset, uint64_t size)
{
    const uint64_t first_bit = offset / a->block_size;
    const uint64_t last_bit = first_bit + size / a->block_size - 1;
    return find_next_zero_bit(a->bitmap, last_bit + 1, first_bit) > last_bit;
}

static uint64_t replay_runs, replay_bytes;

static int replay_cb(uint64_t offset, uint64_t size)
{
    (void)offset;
    replay_runs++;
    replay_bytes += size;
    return 0;
}

/* G1 iterator: maximal populated runs, clipped to the section. */
static int replay_populated(const attrs_t *a, uint64_t start, uint64_t size, int (*fn)(uint64_t, uint64_t))
{
    const uint64_t bs = a->block_size;
    uint64_t first = find_next_bit(a->bitmap, a->nbits, start / bs);
    while (first < a->nbits) {
        uint64_t last = find_next_zero_bit(a->bitmap, a->nbits, first + 1) - 1;
        uint64_t s = first * bs, e = (last + 1) * bs;
        if (s < start)
            s = start;
        if (e > start + size)
            e = start + size;
        if (e <= s)
            break;
        int ret = fn(s, e - s);
        if (ret)
            return ret;
        first = find_next_bit(a->bitmap, a->nbits, last + 2);
    }
    return 0;
}

/* --- harness -------------------------------------------------------------- */

static op_t *read_ops(const char *path, size_t *count)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    *count = (size_t)bytes / sizeof(op_t);
    op_t *ops = malloc(bytes > 0 ? (size_t)bytes : 1);
    if (!ops || fread(ops, sizeof(op_t), *count, f) != *count) {
        fprintf(stderr, "%s: read failed\n", path);
        exit(2);
    }
    fclose(f);
    return ops;
}

static uint64_t checksum_state(const attrs_t *a, uint64_t *shared_pages)
{
    /* FNV-1a over the boundaries of the shared runs. */
    uint64_t h = 1469598103934665603ULL, n = 0;
    uint64_t p = find_next_bit(a->bitmap, a->nbits, 0);
    while (p < a->nbits) {
        uint64_t q = find_next_zero_bit(a->bitmap, a->nbits, p);
        n += q - p;
        h = (h ^ p) * 1099511628211ULL;
        h = (h ^ q) * 1099511628211ULL;
        p = find_next_bit(a->bitmap, a->nbits, q);
    }
    *shared_pages = n;
    return h;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s <pages> <page-size> <setup.ops> <measure.ops> <repeats>\n", argv[0]);
        return 2;
    }
    const uint64_t pages = strtoull(argv[1], NULL, 0);
    const uint64_t page_size = strtoull(argv[2], NULL, 0);
    size_t nsetup, nmeasure;
    op_t *setup = read_ops(argv[3], &nsetup);
    op_t *measure = read_ops(argv[4], &nmeasure);
    const int repeats = atoi(argv[5]);
    const size_t words = (pages + BITS_PER_LONG - 1) / BITS_PER_LONG;

    listener_t listener = { count_populate, count_discard, 0, pages * page_size, 0, 0, 0 };
    attrs_t a = { NULL, pages, page_size, pages * page_size, &listener, 1 };
    double *times = calloc((size_t)repeats, sizeof(double));
    uint64_t work = 0;

    for (int r = 0; r < repeats; r++) {
        free(a.bitmap);
        a.bitmap = calloc(words, sizeof(unsigned long));
        for (size_t i = 0; i < nsetup; i++)
            state_change(&a, setup[i].offset, setup[i].size, setup[i].kind == 1);
        listener.populates = listener.discards = listener.bytes = 0;
        replay_runs = replay_bytes = 0;
        uint64_t populated = 0;

        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (size_t i = 0; i < nmeasure; i++) {
            const op_t *op = &measure[i];
            switch (op->kind) {
            case 0:
            case 1:
                state_change(&a, op->offset, op->size, op->kind == 1);
                break;
            case 2:
                populated += is_populated(&a, op->offset, op->size);
                break;
            case 3:
                replay_populated(&a, op->offset, op->size, replay_cb);
                break;
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        times[r] = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)(nmeasure ? nmeasure : 1);
        work = populated + replay_runs * 3 + replay_bytes / page_size;
    }
    qsort(times, (size_t)repeats, sizeof(double), cmp_double);
    uint64_t shared_pages;
    uint64_t state = checksum_state(&a, &shared_pages);
    printf("{\"nsPerOp\":%.3f,\"minNsPerOp\":%.3f,\"notifications\":%llu,\"work\":%llu,\"sharedPages\":%llu,\"stateHash\":\"%016llx\",\"bitmapBytes\":%llu}\n",
           times[repeats / 2], times[0],
           (unsigned long long)(listener.populates + listener.discards),
           (unsigned long long)work, (unsigned long long)shared_pages,
           (unsigned long long)state, (unsigned long long)(words * sizeof(unsigned long)));
    return 0;
}

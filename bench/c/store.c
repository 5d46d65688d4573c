/*
 * Baseline for the backing-store benchmark: the system calls a store makes
 * for an allocation and a discard, fallocate(KEEP_SIZE) then
 * fallocate(PUNCH_HOLE | KEEP_SIZE) of the same range, on a guest_memfd (on a
 * default VM) or a memfd.
 *
 * Usage: store <guest_memfd|memfd> <bytes> <iterations> <rounds>
 * Prints {"nsPerPair": median over rounds}.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define KVMIO 0xAE
struct create_guest_memfd { uint64_t size, flags, reserved[6]; };
#define CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct create_guest_memfd)

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s <guest_memfd|memfd> <bytes> <iterations> <rounds>\n", argv[0]);
        return 2;
    }
    const long bytes = strtol(argv[2], NULL, 0), iterations = strtol(argv[3], NULL, 0);
    const int rounds = atoi(argv[4]);
    const long size = 64L << 20;
    int fd;
    if (strcmp(argv[1], "guest_memfd") == 0) {
        int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        int vm = kvm < 0 ? -1 : ioctl(kvm, _IO(KVMIO, 0x01), 0);
        struct create_guest_memfd g = { .size = (uint64_t)size };
        fd = vm < 0 ? -1 : ioctl(vm, CREATE_GUEST_MEMFD, &g);
    } else {
        fd = memfd_create("bench", MFD_CLOEXEC);
        if (fd >= 0 && ftruncate(fd, size) < 0)
            fd = -1;
    }
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    double *t = calloc((size_t)rounds, sizeof(double));
    for (int r = 0; r < rounds; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < iterations; i++) {
            if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, bytes) < 0 ||
                fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, bytes) < 0) {
                perror("fallocate");
                return 1;
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        t[r] = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)iterations;
    }
    qsort(t, (size_t)rounds, sizeof(double), cmp);
    printf("{\"nsPerPair\":%.1f}\n", t[rounds / 2]);
    return 0;
}

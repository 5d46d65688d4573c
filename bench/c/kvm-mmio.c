/*
 * Baseline for the exit benchmark: the same guest as guestmem's
 * (mmio-loop.S at CPL3 on identity page tables, low RAM as slot 0), run from
 * C: each KVM_RUN returns with KVM_EXIT_MMIO and goes straight back in.
 *
 * Usage: kvm-mmio <program.bin> <iterations> <rounds>
 * Prints {"nsPerExit": median over rounds}.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define LOW_RAM (2UL << 20)
#define PAGE_TABLES 0x1000UL
#define PROGRAM 0x100000UL
#define STACK_TOP 0x1ff000UL
#define DOORBELL 0xd0000000UL
#define GIB 4

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void segment(struct kvm_segment *s, uint16_t selector, uint8_t type, int l)
{
    memset(s, 0, sizeof(*s));
    s->limit = 0xffffffff;
    s->selector = selector;
    s->type = type;
    s->present = 1;
    s->dpl = 3;
    s->db = !l;
    s->s = 1;
    s->l = l;
    s->g = 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s <program.bin> <iterations> <rounds>\n", argv[0]);
        return 2;
    }
    const long iterations = strtol(argv[2], NULL, 0);
    const int rounds = atoi(argv[3]);
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("KVM_CREATE_VM");
    uint8_t *ram = mmap(NULL, LOW_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ram == MAP_FAILED)
        die("mmap");
    uint64_t *pt = (uint64_t *)(ram + PAGE_TABLES);
    pt[0] = (PAGE_TABLES + 0x1000) | 7;
    for (int g = 0; g < GIB; g++) {
        pt[512 + g] = (PAGE_TABLES + 0x2000 + (unsigned long)g * 0x1000) | 7;
        uint64_t *pd = (uint64_t *)(ram + PAGE_TABLES + 0x2000 + (unsigned long)g * 0x1000);
        for (int e = 0; e < 512; e++)
            pd[e] = ((uint64_t)(g * 512 + e) << 21) | 0x87;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        die(argv[1]);
    size_t n = fread(ram + PROGRAM, 1, LOW_RAM - PROGRAM, f);
    fclose(f);
    if (n == 0)
        die("program");
    struct kvm_userspace_memory_region slot = { .slot = 0, .guest_phys_addr = 0, .memory_size = LOW_RAM, .userspace_addr = (uint64_t)ram };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
        die("KVM_SET_USER_MEMORY_REGION");
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        die("mmap kvm_run");
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + 256 * sizeof(struct kvm_cpuid_entry2));
    cpuid->nent = 256;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0 || ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0)
        die("cpuid");
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
        die("KVM_GET_SREGS");
    segment(&sregs.cs, 0x33, 0xb, 1);
    segment(&sregs.ds, 0x2b, 0x3, 0);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    sregs.cr0 = 0x80050033;
    sregs.cr3 = PAGE_TABLES;
    sregs.cr4 = 0x20;
    sregs.efer = 0x501;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
        die("KVM_SET_SREGS");
    struct kvm_regs regs = { .rip = PROGRAM, .rsp = STACK_TOP, .rflags = 0x202, .rsi = DOORBELL };
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
        die("KVM_SET_REGS");
    double *t = calloc((size_t)rounds, sizeof(double));
    for (int r = 0; r < rounds; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < iterations; i++) {
            if (ioctl(vcpu, KVM_RUN, 0) < 0)
                die("KVM_RUN");
            if (run->exit_reason != KVM_EXIT_MMIO) {
                fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
                return 1;
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        t[r] = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)iterations;
    }
    qsort(t, (size_t)rounds, sizeof(double), cmp);
    printf("{\"nsPerExit\":%.1f}\n", t[rounds / 2]);
    return 0;
}

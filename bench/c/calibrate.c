/*
 * Calibration: the cost of one iteration of a trivial loop (sum of an int32
 * array, 2^20 elements, 100 passes), to compare with the same loop in
 * JavaScript on the same machine. Built with -O2 like every baseline, but the
 * loop is kept scalar (no vectorisation) so that both sides do one add per
 * element. Prints {"nsPerElement": x}.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((optimize("no-tree-vectorize"))) static int32_t sum(const int32_t *a, int n, int passes)
{
    int32_t s = 0;
    for (int k = 0; k < passes; k++)
        for (int i = 0; i < n; i++)
            s += a[i];
    return s;
}

int main(void)
{
    const int n = 1 << 20, passes = 100;
    int32_t *a = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++)
        a[i] = i;
    double best = 1e30;
    volatile int32_t sink = 0;
    for (int r = 0; r < 5; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        sink += sum(a, n, passes);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / ((double)n * passes);
        if (ns < best)
            best = ns;
    }
    printf("{\"nsPerElement\":%.3f,\"sink\":%d}\n", best, (int)sink);
    return 0;
}

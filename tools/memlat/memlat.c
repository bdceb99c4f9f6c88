/* Memory latency floor: follows a shuffled index permutation (each read depends on the last), so
 * every read is a cache (and TLB) miss once the array outgrows the caches. docs/PERFORMANCE.md
 * uses it to say what one random probe of a large in-memory table can cost on a machine.
 *
 * Build and run:
 *   cc -O2 -Wall tools/memlat/memlat.c -o /tmp/memlat && /tmp/memlat 2000000 0 && /tmp/memlat 2000000 1
 * First argument: array length in 8-byte words; second: 1 = ask for transparent huge pages. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s WORDS HUGE(0|1)\n", argv[0]);
        return 2;
    }
    size_t n = (size_t)atol(argv[1]);
    int huge = atoi(argv[2]);
    size_t bytes = n * sizeof(size_t);
    size_t *a = NULL;
    if (n < 2 || posix_memalign((void **)&a, 1 << 21, bytes) != 0) {
        fprintf(stderr, "cannot allocate %zu words\n", n);
        return 1;
    }
    if (huge) {
        madvise(a, bytes, MADV_HUGEPAGE);
    }
    for (size_t i = 0; i < n; i++) {
        a[i] = i;
    }
    /* Sattolo's shuffle: one cycle through every slot. */
    srand(1);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = ((size_t)rand() * RAND_MAX + (size_t)rand()) % i;
        size_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    const size_t iters = 5000000;
    struct timespec start, end;
    size_t p = 0;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (size_t i = 0; i < iters; i++) {
        p = a[p];
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    double ns = (double)(end.tv_sec - start.tv_sec) * 1e9 + (double)(end.tv_nsec - start.tv_nsec);
    printf("n=%zu (%zu MB) huge=%d: %.1f ns/read (end %zu)\n", n, bytes >> 20, huge, ns / iters, p);
    free(a);
    return 0;
}

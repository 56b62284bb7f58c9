/* Counts the heap memory that library code allocates, for tests that bound
 * an op's scratch.  Every test program is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=posix_memalign,--wrap=free,
 * so calls made from ffdp's own (statically linked) objects and the test
 * pass through here; allocations inside shared libraries (libgomp, libc)
 * are not seen.  Thread-safe. */
#ifndef FFDP_ALLOC_COUNT_H
#define FFDP_ALLOC_COUNT_H

#include <stddef.h>

/* Start a measurement: resets the peak to the current live bytes. */
void alloc_count_reset(void);
/* Live bytes now, and the peak since the last reset, minus the live bytes
 * at that reset (i.e. the extra peak of the code measured). */
size_t alloc_count_live(void);
size_t alloc_count_peak_extra(void);
/* Number of allocations since the last reset. */
size_t alloc_count_calls(void);

#endif

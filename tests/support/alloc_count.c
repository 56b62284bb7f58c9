#include "alloc_count.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void __real_free(void *p);

/* Open-addressing table of live pointers; pointers not found (allocated by
 * unwrapped code) pass through free() untouched. */
#define SLOTS (1 << 16)
static struct {
	void *p;
	size_t n;
} table[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static size_t live, peak, base, calls;

static size_t slot_of(void *p)
{
	return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 48) & (SLOTS - 1);
}

static void track(void *p, size_t n)
{
	if (!p)
		return;
	pthread_mutex_lock(&lock);
	size_t s = slot_of(p);
	for (size_t k = 0; k < SLOTS; k++, s = (s + 1) & (SLOTS - 1))
		if (table[s].p == NULL || table[s].p == (void *)1) {
			table[s].p = p, table[s].n = n;
			live += n, calls++;
			if (live > peak)
				peak = live;
			break;
		}
	pthread_mutex_unlock(&lock);
}

static void untrack(void *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&lock);
	size_t s = slot_of(p);
	for (size_t k = 0; k < SLOTS && table[s].p; k++, s = (s + 1) & (SLOTS - 1))
		if (table[s].p == p) {
			live -= table[s].n;
			table[s].p = (void *)1; /* tombstone keeps probe chains intact */
			break;
		}
	pthread_mutex_unlock(&lock);
}

void *__wrap_malloc(size_t n)
{
	void *p = __real_malloc(n);
	track(p, n);
	return p;
}

void *__wrap_calloc(size_t k, size_t n)
{
	void *p = __real_calloc(k, n);
	track(p, k * n);
	return p;
}

void *__wrap_realloc(void *p, size_t n)
{
	untrack(p);
	void *q = __real_realloc(p, n);
	track(q, n);
	return q;
}

int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
	int r = __real_posix_memalign(p, align, n);
	if (r == 0)
		track(*p, n);
	return r;
}

void __wrap_free(void *p)
{
	untrack(p);
	__real_free(p);
}

void alloc_count_reset(void)
{
	pthread_mutex_lock(&lock);
	peak = base = live;
	calls = 0;
	pthread_mutex_unlock(&lock);
}

size_t alloc_count_live(void)
{
	return live;
}

size_t alloc_count_peak_extra(void)
{
	return peak - base;
}

size_t alloc_count_calls(void)
{
	return calls;
}

#define _DEFAULT_SOURCE /* madvise */
#include "ffdp/volume.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

/* posix_memalign hands large blocks out at one offset within a 4 KiB page,
 * so the rows of planes streamed together (u's components, d, out) fall in
 * the same L1 sets and evict each other (4K aliasing: the CPU composition
 * at 192^3 ran 12-15 % faster with its planes apart).  A block of 64 KiB
 * or more is shifted by 64 B to 4 KiB, a multiple of 64 B hashed from its
 * page (no global state); a smaller one by 64 B.  The address
 * posix_memalign gave is kept just below the block for ffdp_free. */
void *ffdp_alloc(size_t bytes, ffdp_error *err)
{
	void *p = NULL;
	size_t rounded = (bytes + 63) & ~(size_t)63;
	if (rounded == 0)
		rounded = 64;
	const size_t pad = rounded >= ((size_t)1 << 16) ? FFDP_ALLOC_PAD : 64;
	if (rounded > SIZE_MAX - pad || posix_memalign(&p, 64, rounded + pad) != 0 || !p) {
		ffdp_fail(err, FFDP_ERR_NOMEM, "cannot allocate %zu bytes", bytes);
		return NULL;
	}
#if defined(__linux__) && defined(MADV_HUGEPAGE)
	/* Blocks of 32 MiB or more in 2 MiB pages where the kernel allows it
	 * (transparent huge pages on request): 512 times fewer faults when the
	 * zeroing below first touches them (the 728x872x728 warp, 5.5 GB, is
	 * allocated as it comes back from the GPU) and fewer TLB misses when
	 * ops stream them.  Advice only: nothing changes where it is off. */
	if (rounded >= ((size_t)32 << 20)) {
		const uintptr_t huge = (uintptr_t)2 << 20, a = ((uintptr_t)p + huge - 1) & ~(huge - 1),
				e = ((uintptr_t)p + rounded + pad) & ~(huge - 1);
		if (e > a)
			madvise((void *)a, e - a, MADV_HUGEPAGE);
	}
#endif
	const uint32_t page = (uint32_t)((uintptr_t)p >> 12);
	const size_t shift = pad == 64 ? 0 : (size_t)((page * 2654435761u) >> 26) * 64;
	char *c = (char *)p + 64 + shift;
	((void **)c)[-1] = p;
	/* Zero in parallel so pages are first touched by the threads that use them. */
	int64_t nblk = (int64_t)(rounded >> 16) + 1;
#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < nblk; b++) {
		size_t lo = (size_t)b << 16, hi = lo + ((size_t)1 << 16);
		if (hi > rounded)
			hi = rounded;
		if (lo < hi)
			memset(c + lo, 0, hi - lo);
	}
	return c;
}

void ffdp_free(void *p)
{
	if (p)
		free(((void **)p)[-1]);
}

ffdp_status ffdp_volume_alloc(ffdp_volume *v, const ffdp_grid *g, ffdp_error *err)
{
	ffdp_status s = ffdp_grid_check(g, err);
	if (s)
		return s;
	v->grid = *g;
	v->data = ffdp_alloc((size_t)ffdp_grid_voxels(g) * sizeof(float), err);
	return v->data ? FFDP_OK : FFDP_ERR_NOMEM;
}

void ffdp_volume_free(ffdp_volume *v)
{
	if (!v)
		return;
	ffdp_free(v->data);
	v->data = NULL;
}

ffdp_status ffdp_volume_copy(ffdp_volume *dst, const ffdp_volume *src, ffdp_error *err)
{
	ffdp_status s = ffdp_volume_alloc(dst, &src->grid, err);
	if (s)
		return s;
	memcpy(dst->data, src->data, (size_t)ffdp_grid_voxels(&src->grid) * sizeof(float));
	return FFDP_OK;
}

void ffdp_volume_range(const ffdp_volume *v, float *lo, float *hi)
{
	int64_t n = ffdp_grid_voxels(&v->grid);
	float mn = v->data[0], mx = v->data[0];
#pragma omp parallel for reduction(min : mn) reduction(max : mx)
	for (int64_t i = 0; i < n; i++) {
		float x = v->data[i];
		mn = x < mn ? x : mn;
		mx = x > mx ? x : mx;
	}
	*lo = mn, *hi = mx;
}

ffdp_status ffdp_field_alloc(ffdp_field *u, const ffdp_grid *g, ffdp_error *err)
{
	return ffdp_field_alloc_comps(u, g, ffdp_grid_dim(g), err);
}

ffdp_status ffdp_field_alloc_comps(ffdp_field *u, const ffdp_grid *g, int ncomp, ffdp_error *err)
{
	ffdp_status s = ffdp_grid_check(g, err);
	if (s)
		return s;
	if (ncomp < 2 || ncomp > 3)
		return ffdp_fail(err, FFDP_ERR_ARG, "field: %d components", ncomp);
	memset(u, 0, sizeof(*u));
	u->grid = *g;
	u->ncomp = ncomp;
	size_t bytes = (size_t)ffdp_grid_voxels(g) * sizeof(float);
	for (int c = 0; c < u->ncomp; c++) {
		u->c[c] = ffdp_alloc(bytes, err);
		if (!u->c[c]) {
			ffdp_field_free(u);
			return FFDP_ERR_NOMEM;
		}
	}
	return FFDP_OK;
}

void ffdp_field_free(ffdp_field *u)
{
	if (!u)
		return;
	for (int c = 0; c < 3; c++) {
		ffdp_free(u->c[c]);
		u->c[c] = NULL;
	}
}

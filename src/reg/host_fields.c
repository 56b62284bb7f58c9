/* The warp's host copies made ready while the device iterates.
 *
 * A download's destination is fresh memory.  First touching it cost the
 * 728x872x728 warp (5.5 GB) 0.16 s of page faults and zeroing after the
 * last iteration, and 0.74 s when the copy itself touched it (faults in
 * 32 MiB steps between DMA waits, on a fresh process).  With a device
 * backend the host idles while the last level iterates, so a helper thread
 * allocates and zeroes the fields then, on a few OpenMP threads of its own
 * team; the finish joins it and copies into them.  The CPU backend's cores
 * are busy with those iterations: there the download allocates, as before.
 */
#include <omp.h>
#include <pthread.h>
#include <string.h>

#include "reg_internal.h"

enum { HF_THREADS = 4 }; /* enough to zero 5.5 GB in well under a full-size level */

static void *hf_touch(void *arg)
{
	reg_host_fields *h = (reg_host_fields *)arg;
	const size_t bytes = (size_t)ffdp_grid_voxels(&h->grid) * sizeof(float);
	for (int k = 0; k < h->n && !h->st; k++) {
		if ((h->st = ffdp_field_alloc_uninit(&h->f[k], &h->grid, h->ncomp, &h->err)))
			break;
		for (int c = 0; c < h->ncomp; c++) {
			char *p = (char *)h->f[k].c[c];
			const int64_t nblk = (int64_t)((bytes + ((size_t)1 << 21) - 1) >> 21);
#pragma omp parallel for num_threads(HF_THREADS) schedule(static)
			for (int64_t b = 0; b < nblk; b++) {
				const size_t lo = (size_t)b << 21, len = bytes - lo < ((size_t)1 << 21) ? bytes - lo : (size_t)1 << 21;
				memset(p + lo, 0, len);
			}
		}
	}
	return NULL;
}

void reg_host_fields_start(reg_host_fields *h, const ffdp_backend *be, const ffdp_grid *g, int ncomp, int n)
{
	memset(h, 0, sizeof(*h));
	if (ffdp_backend_host_memory(be) || n < 1 || n > 2)
		return;
	h->grid = *g, h->ncomp = ncomp, h->n = n;
	h->started = pthread_create(&h->th, NULL, hf_touch, h) == 0;
	if (!h->started)
		h->n = 0; /* the download allocates */
}

static void hf_join(reg_host_fields *h)
{
	if (h->started)
		pthread_join(h->th, NULL);
	h->started = 0;
}

int reg_host_fields_take(reg_host_fields *h, int k, const ffdp_grid *g, int ncomp, ffdp_field *out)
{
	hf_join(h);
	/* field k is whole once allocated (a later field's failure leaves it) */
	if (k >= h->n || !h->f[k].c[0] || ncomp != h->ncomp || !ffdp_grid_same(g, &h->grid, 0.0))
		return 0;
	*out = h->f[k];
	memset(&h->f[k], 0, sizeof(h->f[k]));
	return 1;
}

void reg_host_fields_end(reg_host_fields *h)
{
	hf_join(h);
	for (int k = 0; k < 2; k++)
		ffdp_field_free(&h->f[k]);
}

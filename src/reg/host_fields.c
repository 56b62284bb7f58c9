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
	/* this thread's own team size (an ICV of this thread only): the
	 * allocator's parallel zeroing then runs on HF_THREADS threads */
	omp_set_num_threads(HF_THREADS);
	for (int k = 0; k < h->n && !h->st; k++)
		h->st = ffdp_field_alloc_comps(&h->f[k], &h->grid, h->ncomp, &h->err);
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

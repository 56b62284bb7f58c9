/* Mean squared error (ops.h, "similarity losses"):
 *     loss = (1/denom) sum w (f - m)^2,   w = mask or 1
 *     gm = 2 scale w (m - f) / denom,     gf = -gm
 * with denom = a->denom when > 0, else the mask sum (or the voxel count).
 *
 * One pass over a flat, capped grid: per-thread double sums, a block
 * reduction and one stored partial per block (cu_sums: fixed order).  A mask without a given denom
 * needs its sum before the gradients can be scaled: one more reduction
 * pass over the mask (4 B/voxel), as on the CPU.
 * IO floor: f 4 + m 4 (+ mask 4) + 4 per requested gradient; 12 B/voxel
 * for the usual call (no mask, one gradient).
 */
#include "cuda_common.cuh"

__global__ void sum_kernel(const float *x, int64_t n, double *out)
{
	double s[1] = {0.0};
	CU_FOR_FLAT(i, n)
	s[0] += x[i];
	cu_block_sum_store<1>(s, out);
}

typedef struct mse_k {
	const float *f, *m, *w;
	float *gf, *gm;
	double g; /* 2 scale / denom */
	int64_t n;
} mse_k;

__global__ void mse_kernel(mse_k k, double *out)
{
	double s[1] = {0.0};
	CU_FOR_FLAT(i, k.n)
	{
		const double d = (double)k.f[i] - (double)k.m[i], wd = (k.w ? (double)k.w[i] : 1.0) * d;
		s[0] += wd * d;
		if (k.gm)
			k.gm[i] = (float)(-k.g * wd);
		if (k.gf)
			k.gf[i] = (float)(k.g * wd);
	}
	cu_block_sum_store<1>(s, out);
}

/* The mean's denominator (see above). */
static ffdp_status mse_denom(const ffdp_loss_args *a, int64_t n, double *denom, ffdp_error *err)
{
	if (a->denom > 0.0) {
		*denom = a->denom;
		return FFDP_OK;
	}
	if (!a->mask) {
		*denom = (double)n;
		return FFDP_OK;
	}
	const cu_shape sh = cu_flat_shape(n, cu_reduce_blocks());
	cu_sums d;
	if (!cu_sums_alloc(&d, 1, sh.grid, err, "mse mask sum"))
		return FFDP_ERR_NOMEM;
	sum_kernel<<<sh.grid, sh.block>>>(a->mask, n, d.slots);
	ffdp_status s = cu_launched(err, "mse mask sum");
	if (!s)
		s = cu_sums_fetch(&d, denom, err, "mse mask sum");
	cu_sums_free(&d);
	if (!s && !(*denom > 0.0))
		s = ffdp_fail(err, FFDP_ERR_ARG, "mse: the mask sums to %g and no denominator was given", *denom);
	return s;
}

ffdp_status ffdp_cuda_mse(ffdp_backend *be, const ffdp_loss_args *a, ffdp_error *err)
{
	const int64_t n = a->f.n[0] * a->f.n[1] * a->f.n[2];
	double denom = 0.0, sum = 0.0;
	ffdp_status s = mse_denom(a, n, &denom, err);
	if (s)
		return s;
	const cu_shape sh = cu_flat_shape(n, cu_reduce_blocks());
	cu_sums d;
	if (!cu_sums_alloc(&d, 1, sh.grid, err, "mse"))
		return FFDP_ERR_NOMEM;
	mse_k k = {a->f.p, a->m.p, a->mask, a->gf, a->gm, 2.0 * a->scale / denom, n};
	mse_kernel<<<sh.grid, sh.block>>>(k, d.slots);
	s = cu_launched(err, "mse");
	if (!s && a->later) { /* the sum stays on its way (ops.h) */
		s = cu_sums_reduce(&d, err, "mse");
		if (!s)
			s = ffdp_cuda_scalar_later(be, cu_sums_total(&d), 1.0, denom, a->later, err);
	} else if (!s) {
		s = cu_sums_fetch(&d, &sum, err, "mse");
	}
	cu_sums_free(&d);
	if (s || a->later)
		return s;
	*a->loss = sum / denom;
	if (a->sum)
		*a->sum = sum;
	return FFDP_OK;
}

/* Mean squared error (ops.h, "similarity losses"):
 *     loss = (1/denom) sum w (f - m)^2,   w = mask or 1
 *     gm = 2 scale w (m - f) / denom,     gf = -gm
 * with denom = a->denom when > 0, else the mask sum (or the voxel count).
 *
 * One pass over a flat, capped grid: per-thread double sums, a block
 * reduction and one atomicAdd per block.  A mask without a given denom
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
	cu_block_sum_add<1>(s, out);
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
	cu_block_sum_add<1>(s, out);
}

/* The mean's denominator (see above); *acc is a zeroed device double. */
static ffdp_status mse_denom(const ffdp_loss_args *a, int64_t n, double *acc, double *denom, ffdp_error *err)
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
	sum_kernel<<<sh.grid, sh.block>>>(a->mask, n, acc);
	ffdp_status s = cu_launched(err, "mse mask sum");
	if (!s)
		s = cu_fetch(denom, acc, sizeof(double), err, "mse mask sum");
	if (!s && !(*denom > 0.0))
		s = ffdp_fail(err, FFDP_ERR_ARG, "mse: the mask sums to %g and no denominator was given", *denom);
	return s;
}

ffdp_status ffdp_cuda_mse(ffdp_backend *be, const ffdp_loss_args *a, ffdp_error *err)
{
	(void)be;
	const int64_t n = a->f.n[0] * a->f.n[1] * a->f.n[2];
	double *acc = (double *)cu_scratch(2 * sizeof(double), 1, err, "mse");
	if (!acc)
		return FFDP_ERR_NOMEM;
	double denom = 0.0, sum = 0.0;
	ffdp_status s = mse_denom(a, n, acc + 1, &denom, err);
	if (!s) {
		mse_k k = {a->f.p, a->m.p, a->mask, a->gf, a->gm, 2.0 * a->scale / denom, n};
		const cu_shape sh = cu_flat_shape(n, cu_reduce_blocks());
		mse_kernel<<<sh.grid, sh.block>>>(k, acc);
		s = cu_launched(err, "mse");
	}
	if (!s)
		s = cu_fetch(&sum, acc, sizeof(double), err, "mse");
	cu_scratch_free(acc);
	if (s)
		return s;
	*a->loss = sum / denom;
	if (a->sum)
		*a->sum = sum;
	return FFDP_OK;
}

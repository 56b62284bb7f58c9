/* Mean squared error on the CPU.
 *
 *   loss = (1/denom) sum_x w(x) (f(x) - m(x))^2,   w = mask or 1
 *   dL/dm = 2 w (m - f) scale/denom,   dL/df = -dL/dm
 *
 * Floor: read f and m once (8 B/voxel), the mask once (4 B; twice when its
 * sum is the denominator), write each requested gradient once (4 B).  One
 * pass over fixed blocks, so the sum is the same for any thread count.
 */
#include "cpu_lossutil.h"

typedef struct mse_ctx {
	const float *f, *m, *w;
	float *gf, *gm;
	double g; /* 2 scale / denom */
} mse_ctx;

/* Sum of w (f - m)^2 over [lo, hi), writing the gradients there. */
static double mse_block(const mse_ctx *c, int64_t lo, int64_t hi)
{
	double s = 0.0, g = c->g;
	for (int64_t i = lo; i < hi; i++) {
		double d = (double)c->f[i] - c->m[i], wd = (c->w ? c->w[i] : 1.0) * d;
		s += wd * d;
		if (c->gm)
			c->gm[i] = (float)(-g * wd);
		if (c->gf)
			c->gf[i] = (float)(g * wd);
	}
	return s;
}

ffdp_status ffdp_cpu_mse(ffdp_backend *be, const ffdp_loss_args *a, ffdp_error *err)
{
	double part[FFDP_CPU_MAX_BLOCKS], denom;
	int64_t n = a->f.n[0] * a->f.n[1] * a->f.n[2];
	int64_t len = ffdp_cpu_block_len(n), nb = (n + len - 1) / len;
	ffdp_status s = ffdp_cpu_loss_denom(a, "mse", &denom, err);
	(void)be;
	if (s)
		return s;

	mse_ctx c = {a->f.p, a->m.p, a->mask, a->gf, a->gm, 2.0 * a->scale / denom};
#pragma omp parallel for schedule(static) if (nb > 1)
	for (int64_t b = 0; b < nb; b++)
		part[b] = mse_block(&c, b * len, (b + 1) * len < n ? (b + 1) * len : n);
	double sum = 0.0;
	for (int64_t b = 0; b < nb; b++)
		sum += part[b];
	*a->loss = sum / denom;
	if (a->sum)
		*a->sum = sum;
	return FFDP_OK;
}

/* Mean squared error on the CPU.
 *
 *   loss = (1/denom) sum_x w(x) (f(x) - m(x))^2,   w = mask or 1
 *   dL/dm = 2 w (m - f) scale/denom,   dL/df = -dL/dm
 *
 * Floor: read f and m once (8 B/voxel), the mask once (4 B; twice when its
 * sum is the denominator), write each requested gradient once (4 B).  One
 * pass; row sums, then plane sums in order (ops.h: reproducible sums).
 */
#include "cpu_lossutil.h"
#include "ffdp/volume.h"

typedef struct mse_ctx {
	const float *f, *m, *w;
	float *gf, *gm;
	double g; /* 2 scale / denom */
} mse_ctx;

#if defined(__GNUC__)
#define MSE_INLINE static inline __attribute__((always_inline))
#else
#define MSE_INLINE static inline
#endif

/* Sum of w (f - m)^2 over [lo, hi), writing the gradients there; the flags
 * are constants after inlining, so each variant is a branch-free simd loop. */
MSE_INLINE double mse_span(const mse_ctx *c, int64_t lo, int64_t hi, const int masked, const int wm,
			   const int wf)
{
	const float *f = c->f, *m = c->m, *w = c->w;
	float *gm = c->gm, *gf = c->gf;
	double s = 0.0, g = c->g;
#pragma omp simd reduction(+ : s)
	for (int64_t i = lo; i < hi; i++) {
		double d = (double)f[i] - m[i], wd = (masked ? (double)w[i] : 1.0) * d;
		s += wd * d;
		if (wm)
			gm[i] = (float)(-g * wd);
		if (wf)
			gf[i] = (float)(g * wd);
	}
	return s;
}

static double mse_block(const mse_ctx *c, int64_t lo, int64_t hi)
{
	switch ((c->w != NULL) * 4 + (c->gm != NULL) * 2 + (c->gf != NULL)) {
	case 0: return mse_span(c, lo, hi, 0, 0, 0);
	case 1: return mse_span(c, lo, hi, 0, 0, 1);
	case 2: return mse_span(c, lo, hi, 0, 1, 0);
	case 3: return mse_span(c, lo, hi, 0, 1, 1);
	case 4: return mse_span(c, lo, hi, 1, 0, 0);
	case 5: return mse_span(c, lo, hi, 1, 0, 1);
	case 6: return mse_span(c, lo, hi, 1, 1, 0);
	default: return mse_span(c, lo, hi, 1, 1, 1);
	}
}

ffdp_status ffdp_cpu_mse(ffdp_backend *be, const ffdp_loss_args *a, ffdp_error *err)
{
	const int64_t nx = a->f.n[0], ny = a->f.n[1], nz = a->f.n[2], rows = ny * nz;
	double denom;
	ffdp_status s = ffdp_cpu_loss_denom(a, "mse", &denom, err);
	(void)be;
	if (s)
		return s;
	double *part = ffdp_alloc((size_t)rows * sizeof(double), err);
	if (!part)
		return FFDP_ERR_NOMEM;

	mse_ctx c = {a->f.p, a->m.p, a->mask, a->gf, a->gm, 2.0 * a->scale / denom};
#pragma omp parallel for schedule(static) if (rows * nx > 65536)
	for (int64_t r = 0; r < rows; r++)
		part[r] = mse_block(&c, r * nx, (r + 1) * nx);
	double sum = ffdp_cpu_plane_sums(part, ny, nz, a->zsum);
	ffdp_free(part);
	*a->loss = sum / denom;
	if (a->sum)
		*a->sum = sum;
	return FFDP_OK;
}

/* One safeguarded Newton step of a field inverse (ops.h, "field inverse")
 * on the CPU.  Per voxel: p = i + C v, w and its exact trilinear
 * derivative at p (cpu_trilinear.h, border pad), r = v + w(p), then the
 * shared step (src/ops/newton_inverse.h).  p is formed in the global index
 * frame, so a shard of w with halo gives the whole grid's bits.  Rows in
 * parallel; the residual's maximum is order-free.
 * Floor: v 12 + out 12 + w ~12 (read about once) = 36 B/voxel.
 */
#include <math.h>

#include "../../ops/newton_inverse.h"
#include "cpu_ops.h"
#include "cpu_trilinear.h"

typedef struct inv {
	const float *w[3], *v[3];
	float *out[3];
	int64_t wn[3], ws[3], wlo[3], lo[3], n[3];
	const double *C;
	int nc;
} inv;

/* One row; d3 is a constant at each call.  Returns the row's max |r|. */
TL_INLINE double inv_row(const inv *s, int64_t r, const int d3)
{
	const int nc = d3 ? 3 : 2;
	const int64_t nx = s->n[0], j0 = r * nx;
	const double gy = (double)(s->lo[1] + r % s->n[1]), gz = (double)(s->lo[2] + r / s->n[1]);
	double worst = 0.0;
	for (int64_t x = 0; x < nx; x++) {
		const int64_t j = j0 + x;
		double v[3] = {s->v[0][j], s->v[1][j], d3 ? s->v[2][j] : 0.0};
		double p[3] = {(double)(s->lo[0] + x), gy, gz}, res[3] = {0, 0, 0}, G[9] = {0}, delta[3];
		for (int a = 0; a < nc; a++)
			for (int b = 0; b < nc; b++)
				p[a] += s->C[3 * a + b] * v[b];
		tl_axis ax[3];
		tl_axes(p, s->wlo, s->wn, s->ws, FFDP_PAD_BORDER, d3, ax);
		for (int c = 0; c < nc; c++) {
			float g[3];
			res[c] = v[c] + (double)tl_value_grad(s->w[c], &ax[0], &ax[1], &ax[2], d3, g);
			G[3 * c] = g[0], G[3 * c + 1] = g[1], G[3 * c + 2] = g[2];
			/* NaN counts as the worst residual (never "converged") */
			worst = fmax(worst, fabs(res[c]) <= 1e308 ? fabs(res[c]) : INFINITY);
		}
		ffdp_newton_delta(res, G, s->C, nc, delta);
		for (int c = 0; c < nc; c++)
			s->out[c][j] = (float)(v[c] - delta[c]);
	}
	return worst;
}

ffdp_status ffdp_cpu_invert_step(ffdp_backend *be, const ffdp_invert_args *a, double *resid, ffdp_error *err)
{
	(void)be, (void)err;
	inv s = {.C = a->C, .nc = a->v.ncomp};
	for (int k = 0; k < 3; k++) {
		s.w[k] = k < s.nc ? a->w.c[k] : NULL;
		s.v[k] = k < s.nc ? a->v.c[k] : NULL;
		s.out[k] = k < s.nc ? a->out.c[k] : NULL;
		s.wn[k] = a->w.n[k];
		s.wlo[k] = a->w_lo[k];
		s.lo[k] = a->lo[k];
		s.n[k] = a->v.n[k];
	}
	s.ws[0] = 1, s.ws[1] = s.wn[0], s.ws[2] = s.wn[0] * s.wn[1];
	const int64_t rows = s.n[1] * s.n[2];
	double worst = 0.0;
#pragma omp parallel for schedule(static) reduction(max : worst)
	for (int64_t r = 0; r < rows; r++) {
		double m = s.nc == 3 ? inv_row(&s, r, 1) : inv_row(&s, r, 0);
		worst = m > worst ? m : worst;
	}
	*resid = worst;
	return FFDP_OK;
}

/* Composition of displacements on the CPU:
 *     out(j) = d(j) + u(q),  q = (lo + j) + C d(j),
 * u on its own box at global index u_lo, sampled trilinearly with pad.
 *
 * q is formed in the global index frame and only the integer corner indices
 * are moved into u's box, so a shard (u with halo) computes the same weights
 * as the whole grid.  One pass, parallel over rows; each voxel reads its d
 * before writing out, so out may alias d.  The axis weights are computed
 * once and reused for the 3 components.
 * Floor: d 12 B read + out 12 B written + u ~12 B read (each u voxel is
 * read about once when |d| is a few voxels) = 36 B/voxel (24 B in 2-D).
 */
#include "cpu_ops.h"
#include "cpu_trilinear.h"

typedef struct cmp {
	const float *u[3];
	float *out[3];
	const float *d[3];
	int64_t un[3], us[3], ulo[3];
	int64_t lo[3], n[3];
	const double *C;
	ffdp_pad pad;
	int nc;
} cmp;

/* One row; pad and d3 are constants at each call, so each case is its own loop. */
TL_INLINE void cmp_row(const cmp *s, int64_t r, const ffdp_pad pad, const int d3)
{
	int64_t nx = s->n[0], j0 = r * nx;
	double gy = (double)(s->lo[1] + r % s->n[1]), gz = (double)(s->lo[2] + r / s->n[1]);
	for (int64_t x = 0; x < nx; x++) {
		int64_t j = j0 + x;
		double d[3] = {s->d[0][j], s->d[1][j], d3 ? s->d[2][j] : 0.0};
		double i[3] = {(double)(s->lo[0] + x), gy, gz}, q[3];
		tl_axis ax[3];
		for (int k = 0; k < (d3 ? 3 : 2); k++)
			q[k] = i[k] + s->C[3 * k] * d[0] + s->C[3 * k + 1] * d[1] + s->C[3 * k + 2] * d[2];
		tl_axes(q, s->ulo, s->un, s->us, pad, d3, ax);
		for (int c = 0; c < (d3 ? 3 : 2); c++)
			s->out[c][j] = (float)d[c] + tl_value(s->u[c], &ax[0], &ax[1], &ax[2], d3);
	}
}

static void cmp_row_any(const cmp *s, int64_t r)
{
	if (s->nc == 3 && s->pad == FFDP_PAD_BORDER)
		cmp_row(s, r, FFDP_PAD_BORDER, 1);
	else if (s->nc == 3)
		cmp_row(s, r, FFDP_PAD_ZERO, 1);
	else if (s->pad == FFDP_PAD_BORDER)
		cmp_row(s, r, FFDP_PAD_BORDER, 0);
	else
		cmp_row(s, r, FFDP_PAD_ZERO, 0);
}

ffdp_status ffdp_cpu_compose(ffdp_backend *be, const ffdp_compose_args *a, ffdp_error *err)
{
	(void)be, (void)err;
	cmp s = {.C = a->C, .pad = a->pad, .nc = a->u.ncomp};
	for (int k = 0; k < 3; k++) {
		s.u[k] = k < s.nc ? a->u.c[k] : NULL;
		s.d[k] = k < s.nc ? a->d.c[k] : NULL;
		s.out[k] = k < s.nc ? a->out.c[k] : NULL;
		s.un[k] = a->u.n[k];
		s.ulo[k] = a->u_lo[k];
		s.lo[k] = a->lo[k];
		s.n[k] = a->d.n[k];
	}
	s.us[0] = 1, s.us[1] = s.un[0], s.us[2] = s.un[0] * s.un[1];
	int64_t rows = s.n[1] * s.n[2];
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++)
		cmp_row_any(&s, r);
	return FFDP_OK;
}

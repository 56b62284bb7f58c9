/* Composition of displacements on the CPU:
 *     out(j) = d(j) + u(q),  q = (lo + j) + C d(j),
 * u on its own box at global index u_lo, sampled trilinearly with pad.
 *
 * q is formed in the global index frame and only the integer corner indices
 * are moved into u's box, so a shard (u with halo) computes the same weights
 * as the whole grid.  One pass, parallel over rows; each voxel reads its d
 * before writing out, so out may alias d.  The axis weights are computed
 * once and reused for the 3 components.  With AVX2, groups of 8 voxels whose
 * points lie within a voxel of their own take the stencil of
 * cpu_tristencil.h (contiguous loads, same bits); the others this path.
 * Floor: d 12 B read + out 12 B written + u ~12 B read (each u voxel is
 * read about once when |d| is a few voxels) = 36 B/voxel (24 B in 2-D).
 */
#include "cpu_ops.h"
#include "cpu_trilinear.h"
#include "cpu_tristencil.h"

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

/* Voxel x of row r (global y, z in gy, gz); pad and d3 are constants at
 * each call, so each case is its own code. */
TL_INLINE void cmp_voxel(const cmp *s, int64_t r, int64_t x, double gy, double gz, const ffdp_pad pad,
			 const int d3)
{
	int64_t j = r * s->n[0] + x;
	double d[3] = {s->d[0][j], s->d[1][j], d3 ? s->d[2][j] : 0.0};
	double i[3] = {(double)(s->lo[0] + x), gy, gz}, q[3];
	tl_axis ax[3];
	for (int k = 0; k < (d3 ? 3 : 2); k++)
		q[k] = i[k] + s->C[3 * k] * d[0] + s->C[3 * k + 1] * d[1] + s->C[3 * k + 2] * d[2];
	tl_axes(q, s->ulo, s->un, s->us, pad, d3, ax);
	for (int c = 0; c < (d3 ? 3 : 2); c++)
		s->out[c][j] = (float)d[c] + tl_value(s->u[c], &ax[0], &ax[1], &ax[2], d3);
}

TL_INLINE void cmp_span(const cmp *s, int64_t r, int64_t x0, int64_t x1, const ffdp_pad pad, const int d3)
{
	double gy = (double)(s->lo[1] + r % s->n[1]), gz = (double)(s->lo[2] + r / s->n[1]);
	for (int64_t x = x0; x < x1; x++)
		cmp_voxel(s, r, x, gy, gz, pad, d3);
}

/* Voxels [x0, x1) of row r, any case. */
TL_INLINE void cmp_voxels(const cmp *s, int64_t r, int64_t x0, int64_t x1)
{
	if (s->nc == 3 && s->pad == FFDP_PAD_BORDER)
		cmp_span(s, r, x0, x1, FFDP_PAD_BORDER, 1);
	else if (s->nc == 3)
		cmp_span(s, r, x0, x1, FFDP_PAD_ZERO, 1);
	else if (s->pad == FFDP_PAD_BORDER)
		cmp_span(s, r, x0, x1, FFDP_PAD_BORDER, 0);
	else
		cmp_span(s, r, x0, x1, FFDP_PAD_ZERO, 0);
}

#ifdef TS_AVX2
/* Along axis a for the 8 voxels at global index i (lo and hi lanes): the
 * scalar path's q, floor and fraction in double; returns the lanes (bits)
 * that are inside u's box with a floor offset of -1 or 0. */
TS_FN int cmp8_axis(const cmp *s, int a, __m256d ilo, __m256d ihi, const __m256d dl[3], const __m256d dh[3],
		    ts_axis *ax)
{
	const __m256d c0 = _mm256_set1_pd(s->C[3 * a]), c1 = _mm256_set1_pd(s->C[3 * a + 1]);
	const __m256d c2 = _mm256_set1_pd(s->C[3 * a + 2]), off = _mm256_set1_pd((double)s->ulo[a]);
	const __m256d top = _mm256_set1_pd((double)(s->un[a] - 1)), zero = _mm256_setzero_pd();
	const __m256d m1 = _mm256_set1_pd(-1.0);
	__m128 f[2], rel[2];
	int ok = 0;
	for (int h = 0; h < 2; h++) {
		const __m256d i = h ? ihi : ilo, *d = h ? dh : dl;
		__m256d q = _mm256_add_pd(i, _mm256_mul_pd(c0, d[0]));
		q = _mm256_add_pd(q, _mm256_mul_pd(c1, d[1]));
		q = _mm256_add_pd(q, _mm256_mul_pd(c2, d[2]));
		const __m256d fl = _mm256_floor_pd(q), rd = _mm256_sub_pd(fl, i), qo = _mm256_sub_pd(q, off);
		__m256d in = _mm256_or_pd(_mm256_cmp_pd(rd, zero, _CMP_EQ_OQ), _mm256_cmp_pd(rd, m1, _CMP_EQ_OQ));
		in = _mm256_and_pd(in, _mm256_cmp_pd(qo, zero, _CMP_GE_OQ));
		in = _mm256_and_pd(in, _mm256_cmp_pd(qo, top, _CMP_LT_OQ));
		ok |= _mm256_movemask_pd(in) << (4 * h);
		f[h] = _mm256_cvtpd_ps(_mm256_sub_pd(q, fl));
		rel[h] = _mm256_cvtpd_ps(rd);
	}
	const __m256 fv = _mm256_set_m128(f[1], f[0]), rv = _mm256_set_m128(rel[1], rel[0]);
	ts_axis_set(ax, _mm256_cmp_ps(rv, _mm256_set1_ps(-1.0f), _CMP_EQ_OQ),
		    _mm256_sub_ps(_mm256_set1_ps(1.0f), fv), fv);
	return ok;
}

/* Voxels x .. x + 7 of row r at global (gx, gy, gz); offsets of u's planes
 * and rows around (gy, gz) in planeoff, rowoff.  0 (nothing written) unless
 * all 8 qualify. */
TS_FN int cmp8(const cmp *s, int64_t r, int64_t x, int64_t gx, double gy, double gz, const int64_t planeoff[3],
	       const int64_t rowoff[3])
{
	const int64_t j = r * s->n[0] + x;
	__m256d dl[3], dh[3];
	__m256 d[3];
	for (int c = 0; c < 3; c++) {
		d[c] = _mm256_loadu_ps(s->d[c] + j);
		dl[c] = _mm256_cvtps_pd(_mm256_castps256_ps128(d[c]));
		dh[c] = _mm256_cvtps_pd(_mm256_extractf128_ps(d[c], 1));
	}
	const __m256d lane = _mm256_set_pd(3.0, 2.0, 1.0, 0.0), gxd = _mm256_set1_pd((double)gx);
	const __m256d ilo = _mm256_add_pd(gxd, lane);
	const __m256d ihi = _mm256_add_pd(ilo, _mm256_set1_pd(4.0));
	const __m256d yv = _mm256_set1_pd(gy), zv = _mm256_set1_pd(gz);
	ts_axis ax[3];
	if (cmp8_axis(s, 0, ilo, ihi, dl, dh, &ax[0]) != 0xff || cmp8_axis(s, 1, yv, yv, dl, dh, &ax[1]) != 0xff ||
	    cmp8_axis(s, 2, zv, zv, dl, dh, &ax[2]) != 0xff)
		return 0;
	const int64_t ux = gx - s->ulo[0];
	for (int c = 0; c < 3; c++) {
		const float *plane[3] = {s->u[c] + planeoff[0], s->u[c] + planeoff[1], s->u[c] + planeoff[2]};
		const __m256 val = ts_value(plane, rowoff, ux, &ax[0], &ax[1], &ax[2]);
		_mm256_storeu_ps(s->out[c] + j, _mm256_add_ps(d[c], val));
	}
	return 1;
}

/* A 3-D row: groups of 8 voxels whose x - 1 .. x + 8 lie in u's box take
 * the stencil; the rest (and groups that do not qualify) the scalar path. */
__attribute__((noinline, target("avx2,fma"))) static void cmp_row_avx2(const cmp *s, int64_t r)
{
	const int64_t nx = s->n[0], gy = s->lo[1] + r % s->n[1], gz = s->lo[2] + r / s->n[1];
	int64_t planeoff[3], rowoff[3]; /* clamped into the box: a lane that needs one outside is not inside */
	for (int e = 0; e < 3; e++) {
		planeoff[e] = tl_clampi(gz + e - 1 - s->ulo[2], s->un[2]) * s->us[2];
		rowoff[e] = tl_clampi(gy + e - 1 - s->ulo[1], s->un[1]) * s->us[1];
	}
	/* x range whose groups read inside the box: 1 <= ux and ux + 8 <= un0 - 1 */
	int64_t xa = 1 + s->ulo[0] - s->lo[0], xb = s->un[0] - 9 + s->ulo[0] - s->lo[0];
	xa = xa > 0 ? xa : 0;
	xb = xb < nx - 8 ? xb : nx - 8;
	int64_t x = 0;
	if (xa <= xb) {
		cmp_voxels(s, r, 0, xa);
		for (x = xa; x <= xb; x += 8)
			if (!cmp8(s, r, x, s->lo[0] + x, (double)gy, (double)gz, planeoff, rowoff))
				cmp_voxels(s, r, x, x + 8);
	}
	cmp_voxels(s, r, x, nx);
}
#endif

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
	int simd = s.nc == 3 && ffdp_cpu_use_avx2();
	(void)simd;
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
#ifdef TS_AVX2
		if (simd) {
			cmp_row_avx2(&s, r);
			continue;
		}
#endif
		cmp_voxels(&s, r, 0, s.n[0]);
	}
	return FFDP_OK;
}

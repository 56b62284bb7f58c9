/* Composition of displacements on the CPU:
 *     out(j) = d(j) + u(q),  q = (lo + j) + C d(j),
 * u on its own box at global index u_lo, sampled trilinearly with pad.
 *
 * The offset off = C d is taken in float (the CUDA backend's rounding),
 * q = i + off in double.  Only the integer corner indices are moved into
 * u's box, so a shard (u with halo) computes the same weights as the whole
 * grid.  One pass, parallel over rows; each voxel reads its d before its
 * out is written, so out may alias d.  The axis weights are computed once
 * and reused for the 3 components.  With AVX2, groups of 8 voxels whose
 * points lie within a voxel of their own take the stencil of
 * cpu_tristencil.h (contiguous loads), in float: where i + off is exact in
 * double, floor(q) = i + floor(off) and the fraction is off - floor(off),
 * this path's bits.  Other groups gather (cpu_trilinear8.h: q in double,
 * this path's bits); rows under 8 voxels take this path.
 * Floor: d 12 B read + out 12 B written + u ~12 B read (each u voxel is
 * read about once when |d| is a few voxels) = 36 B/voxel (24 B in 2-D).
 */
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"
#include "cpu_trilinear.h"
#include "cpu_trilinear8.h"
#include "cpu_tristencil.h"

typedef struct cmp {
	const float *u[3];
	float *out[3];
	const float *d[3];
	int64_t un[3], us[3], ulo[3];
	int64_t lo[3], n[3];
	float C[9];
	ffdp_pad pad;
	int nc;
	int gather; /* u's box fits the 32-bit offsets of cpu_trilinear8.h */
} cmp;

/* (C d)_k in float, one order for every path. */
TL_INLINE float cmp_off(const float *C, int k, float d0, float d1, float d2)
{
	return C[3 * k] * d0 + C[3 * k + 1] * d1 + C[3 * k + 2] * d2;
}

/* Voxel x of row r (global y, z in gy, gz); pad and d3 are constants at
 * each call, so each case is its own code. */
TL_INLINE void cmp_voxel(const cmp *s, int64_t r, int64_t x, double gy, double gz, const ffdp_pad pad,
			 const int d3)
{
	int64_t j = r * s->n[0] + x;
	float d[3] = {s->d[0][j], s->d[1][j], d3 ? s->d[2][j] : 0.0f};
	double i[3] = {(double)(s->lo[0] + x), gy, gz}, q[3];
	tl_axis ax[3];
	for (int k = 0; k < (d3 ? 3 : 2); k++)
		q[k] = i[k] + (double)cmp_off(s->C, k, d[0], d[1], d[2]);
	tl_axes(q, s->ulo, s->un, s->us, pad, d3, ax);
	for (int c = 0; c < (d3 ? 3 : 2); c++)
		s->out[c][j] = d[c] + tl_value(s->u[c], &ax[0], &ax[1], &ax[2], d3);
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
/* One row's constants for the stencil: C broadcast, u's planes (per
 * component) and row offsets around the row (clamped into the box), the
 * faces of u's box the row lies on (ts_faces; stencil = 0 when the row is
 * outside u's box in y or z), and per axis the smallest nonzero |off| for
 * which i + off is exact in double (ex). */
typedef struct cmp_row {
	__m256 C[9], ex[3];
	const float *plane[3][3];
	int64_t rowoff[3], gy, gz;
	int face[3], stencil;
	tl8_box box;
} cmp_row;

/* (C d)_a of 8 voxels, cmp_off's operations. */
TS_FN __m256 cmp8_off(const cmp_row *w, int a, const __m256 d[3])
{
	__m256 off = _mm256_add_ps(_mm256_mul_ps(w->C[3 * a], d[0]), _mm256_mul_ps(w->C[3 * a + 1], d[1]));
	return _mm256_add_ps(off, _mm256_mul_ps(w->C[3 * a + 2], d[2]));
}

/* Along axis a: the lanes whose floor is -1 (m) and the weights; returns
 * the lanes (bits) whose floor is -1 or 0 and whose i + off is exact in
 * double. */
TS_FN int cmp8_axis(__m256 ex, __m256 off, __m256 *m, __m256 *w0, __m256 *w1)
{
	const __m256 zero = _mm256_setzero_ps(), mag = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), off);
	const __m256 fl = _mm256_floor_ps(off), f = _mm256_sub_ps(off, fl);
	__m256 in = _mm256_and_ps(_mm256_cmp_ps(off, _mm256_set1_ps(-1.0f), _CMP_GE_OQ),
				  _mm256_cmp_ps(off, _mm256_set1_ps(1.0f), _CMP_LT_OQ));
	in = _mm256_and_ps(in, _mm256_or_ps(_mm256_cmp_ps(mag, ex, _CMP_GE_OQ), _mm256_cmp_ps(off, zero, _CMP_EQ_OQ)));
	*m = _mm256_cmp_ps(off, zero, _CMP_LT_OQ), *w0 = _mm256_sub_ps(_mm256_set1_ps(1.0f), f), *w1 = f;
	return _mm256_movemask_ps(in);
}

/* Any 8 points i + off (i: global indices of voxel 0, off per axis) by
 * cpu_trilinear8.h's gathers, padded where a cell is not inside u's box:
 * q = i + off in double as the scalar path takes it, so its bits. */
TS_FN void cmp8_gather(const cmp *s, const cmp_row *w, const int64_t i[3], const __m256 off[3], const __m256 d[3],
		       __m256 v[3])
{
	__m256d p[2][3];
	for (int k = 0; k < 3; k++) {
		__m256d base = _mm256_set1_pd((double)i[k]);
		if (k == 0)
			base = _mm256_add_pd(base, _mm256_setr_pd(0, 1, 2, 3));
		p[0][k] = _mm256_add_pd(base, _mm256_cvtps_pd(_mm256_castps256_ps128(off[k])));
		if (k == 0)
			base = _mm256_add_pd(base, _mm256_set1_pd(4.0));
		p[1][k] = _mm256_add_pd(base, _mm256_cvtps_pd(_mm256_extractf128_ps(off[k], 1)));
	}
	tl8 t;
	if (!tl8_locate(&w->box, p, &t))
		tl8_locate_pad(&w->box, p, s->pad, &t);
	for (int c = 0; c < 3; c++) {
		tl8_gather_loads(&w->box, s->u[c], &t);
		v[c] = _mm256_add_ps(d[c], tl8_value(&t));
	}
}

/* How the group at u's x index ux may take the stencil: its row-end flags
 * (TS_HEAD, TS_TAIL; 0 inside the row), or -1 when x .. x + 7 are not all
 * in u's box. */
TS_FN int cmp8_xmode(const cmp *s, const cmp_row *w, int64_t ux)
{
	if (!w->stencil || ux < 0 || ux + 8 > s->un[0])
		return -1;
	return (ux == 0 ? TS_HEAD : 0) | (ux + 8 == s->un[0] ? TS_TAIL : 0);
}

/* d + u at the 8 points by the stencil, the pads' taps at u's faces; 0 (v
 * unset) unless every lane qualifies. */
TS_FN int cmp8_stencil(const cmp *s, const cmp_row *w, int64_t ux, const __m256 d[3], const __m256 off[3],
		       const int edge, __m256 v[3])
{
	__m256 m[3], w0[3], w1[3];
	int ok = 0xff;
	for (int a = 0; a < 3; a++)
		ok &= cmp8_axis(w->ex[a], off[a], &m[a], &w0[a], &w1[a]);
	if (ok != 0xff)
		return 0;
	ts_faces(edge, w->face, s->pad == FFDP_PAD_BORDER, m, w0, w1);
	ts_axis ax[3];
	for (int a = 0; a < 3; a++)
		ts_axis_set(&ax[a], m[a], w0[a], w1[a]);
#pragma GCC unroll 3
	for (int c = 0; c < 3; c++)
		v[c] = _mm256_add_ps(d[c], ts_value(w->plane[c], w->rowoff, ux, &ax[0], &ax[1], &ax[2], edge));
	return 1;
}

/* out = d + u(q) of voxels x .. x + 7 of row r into v: the stencil where
 * the group may take it and every lane qualifies, else gathers; 0 (v
 * unset) when neither may be used. */
TS_FN int cmp8_eval(const cmp *s, const cmp_row *w, int64_t r, int64_t x, __m256 v[3])
{
	const int64_t j = r * s->n[0] + x, ux = s->lo[0] + x - s->ulo[0];
	const int mode = cmp8_xmode(s, w, ux);
	__m256 d[3], off[3];
	for (int c = 0; c < 3; c++)
		d[c] = _mm256_loadu_ps(s->d[c] + j);
	for (int a = 0; a < 3; a++)
		off[a] = cmp8_off(w, a, d);
	int done = 0;
	if (mode == 0)
		done = cmp8_stencil(s, w, ux, d, off, 0, v);
	else if (mode == TS_HEAD)
		done = cmp8_stencil(s, w, ux, d, off, TS_HEAD, v);
	else if (mode == TS_TAIL)
		done = cmp8_stencil(s, w, ux, d, off, TS_TAIL, v);
	else if (mode == (TS_HEAD | TS_TAIL))
		done = cmp8_stencil(s, w, ux, d, off, TS_HEAD | TS_TAIL, v);
	if (done)
		return 1;
	if (!s->gather)
		return 0;
	const int64_t i[3] = {s->lo[0] + x, w->gy, w->gz};
	cmp8_gather(s, w, i, off, d, v);
	return 1;
}

TS_FN void cmp8_store(const cmp *s, int64_t j, const __m256 v[3])
{
	for (int c = 0; c < 3; c++)
		_mm256_storeu_ps(s->out[c] + j, v[c]);
}

TS_FN void cmp_row_make(const cmp *s, int64_t r, cmp_row *w)
{
	w->gy = s->lo[1] + r % s->n[1], w->gz = s->lo[2] + r / s->n[1];
	const int64_t b[3] = {0, w->gy - s->ulo[1], w->gz - s->ulo[2]};
	w->box = tl8_box_make(s->ulo, s->un, s->ulo, s->un);
	for (int e = 0; e < 9; e++)
		w->C[e] = _mm256_set1_ps(s->C[e]);
	for (int e = 0; e < 3; e++) {
		for (int c = 0; c < 3; c++)
			w->plane[c][e] = s->u[c] + tl_clampi(b[2] + e - 1, s->un[2]) * s->us[2];
		w->rowoff[e] = tl_clampi(b[1] + e - 1, s->un[1]) * s->us[1];
	}
	w->stencil = 1, w->face[0] = 0;
	for (int a = 1; a < 3; a++) {
		w->stencil &= b[a] >= 0 && b[a] <= s->un[a] - 1;
		w->face[a] = (b[a] == 0) | (b[a] == s->un[a] - 1) << 1;
	}
	/* i + off is exact in double when |i + off| < 2^53 ulp(off), which
	 * |off| >= (|i| + 1) 2^-28 ensures for |off| < 1 */
	const int64_t g[3] = {llabs(s->lo[0]) > llabs(s->lo[0] + s->n[0]) ? llabs(s->lo[0]) : llabs(s->lo[0] + s->n[0]),
			      llabs(w->gy), llabs(w->gz)};
	for (int a = 0; a < 3; a++)
		w->ex[a] = _mm256_set1_ps((float)ldexp((double)(g[a] + 1), -28));
}

/* A 3-D row of at least 8 voxels: groups of 8 from x = 0, the last one
 * overlapping the group before it (evaluated first, so in place it still
 * reads its d); groups that neither the stencil nor the gathers may take,
 * the scalar path. */
__attribute__((noinline, target("avx2,fma"))) static void cmp_row_avx2(const cmp *s, int64_t r)
{
	const int64_t nx = s->n[0], j0 = r * nx, xl = nx - 8;
	cmp_row w;
	__m256 last[3], v[3];
	int64_t x;
	cmp_row_make(s, r, &w);
	const int tail = xl % 8 != 0 && cmp8_eval(s, &w, r, xl, last);
	for (x = 0; x <= xl; x += 8) {
		if (cmp8_eval(s, &w, r, x, v))
			cmp8_store(s, j0 + x, v);
		else
			cmp_voxels(s, r, x, x + 8);
	}
	if (tail)
		cmp8_store(s, j0 + xl, last);
	else
		cmp_voxels(s, r, x, nx);
}
#endif

ffdp_status ffdp_cpu_compose(ffdp_backend *be, const ffdp_compose_args *a, ffdp_error *err)
{
	(void)be, (void)err;
	cmp s = {.pad = a->pad, .nc = a->u.ncomp};
	for (int e = 0; e < 9; e++)
		s.C[e] = (float)a->C[e];
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
	s.gather = s.us[2] * s.un[2] < INT32_MAX;
	for (int k = 0; k < 3; k++)
		s.gather &= s.ulo[k] > INT32_MIN / 2 && s.ulo[k] + s.un[k] < INT32_MAX / 2;
	int64_t rows = s.n[1] * s.n[2];
	int simd = s.nc == 3 && s.n[0] >= 8 && ffdp_cpu_use_avx2();
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

/* Safeguarded Newton steps of a field inverse (ops.h, "field inverse") on
 * the CPU.  Per voxel and step: p = i + C x, w and its exact trilinear
 * derivative at p (cpu_trilinear.h, border pad), r = x + w(p), then the
 * shared step (src/ops/newton_inverse.h); a voxel stops once |r| <= tol.
 * p is formed in the global index frame, so a shard of w with halo gives
 * the whole grid's bits.  Rows in parallel; the residual's maximum is
 * order-free.  An AVX2 path (below) does 8 voxels at a time with the same
 * bits.
 * Floor: v 12 + out 12 + w ~12 (read about once) = 36 B/voxel.
 */
#include <math.h>
#include <stdlib.h>

#include "../../ops/newton_inverse.h"
#include "cpu_ops.h"
#include "cpu_trilinear.h"
#include "cpu_trilinear8.h"

typedef struct inv {
	const float *w[3], *v[3];
	float *out[3];
	int64_t wn[3], ws[3], wlo[3], lo[3], n[3];
	const double *C;
	double tol;
	int nc, iters;
	int diag; /* C's off-diagonal entries are zeros (an axis-aligned grid) */
} inv;

/* One evaluation at x for the voxel at global index i: r and, where r is
 * above tol, the step.  Returns |r|_inf (NaN counts as infinite: never
 * "converged"). */
TL_INLINE double inv_eval(const inv *s, const double i[3], const double x[3], double delta[3], const int d3)
{
	const int nc = d3 ? 3 : 2;
	double p[3] = {i[0], i[1], i[2]}, res[3] = {0, 0, 0}, G[9] = {0}, e = 0.0;
	for (int a = 0; a < nc; a++)
		for (int b = 0; b < nc; b++)
			p[a] += s->C[3 * a + b] * x[b];
	tl_axis ax[3];
	tl_axes(p, s->wlo, s->wn, s->ws, FFDP_PAD_BORDER, d3, ax);
	for (int c = 0; c < nc; c++) {
		float g[3];
		res[c] = x[c] + (double)tl_value_grad(s->w[c], &ax[0], &ax[1], &ax[2], d3, g);
		G[3 * c] = g[0], G[3 * c + 1] = g[1], G[3 * c + 2] = g[2];
		e = fmax(e, fabs(res[c]) <= 1e308 ? fabs(res[c]) : INFINITY);
	}
	if (!(e <= s->tol))
		ffdp_newton_delta(res, G, s->C, nc, delta);
	return e;
}

/* Voxels [x0, x1) of one row; d3 is a constant at each call.  Returns
 * their max |r|. */
TL_INLINE double inv_span(const inv *s, int64_t r, int64_t x0, int64_t x1, const int d3)
{
	const int nc = d3 ? 3 : 2;
	const int64_t nx = s->n[0], j0 = r * nx;
	const double gy = (double)(s->lo[1] + r % s->n[1]), gz = (double)(s->lo[2] + r / s->n[1]);
	double worst = 0.0;
	for (int64_t x = x0; x < x1; x++) {
		const int64_t j = j0 + x;
		const double i[3] = {(double)(s->lo[0] + x), gy, gz};
		double v[3] = {s->v[0][j], s->v[1][j], d3 ? s->v[2][j] : 0.0}, delta[3], e = 0.0;
		for (int k = 0; k < s->iters; k++) {
			if ((e = inv_eval(s, i, v, delta, d3)) <= s->tol)
				break;
			for (int c = 0; c < nc; c++)
				v[c] -= delta[c];
		}
		worst = fmax(worst, e);
		for (int c = 0; c < nc; c++)
			s->out[c][j] = (float)v[c];
	}
	return worst;
}

static double inv_span_any(const inv *s, int64_t r, int64_t x0, int64_t x1)
{
	return s->nc == 3 ? inv_span(s, r, x0, x1, 1) : inv_span(s, r, x0, x1, 0);
}

/* ---- AVX2 --------------------------------------------------------------------
 * 3-D, 8 voxels of a row at a time: p in double, the corners of the three
 * components gathered at the same offsets (cpu_trilinear8.h, border
 * padded), the residual, the derivatives and the Newton step in double,
 * 4 lanes twice.  Every operation is the scalar path's in its order, so
 * the bits agree. */
#ifdef TL8_AVX2
#define PD_ADD _mm256_add_pd
#define PD_SUB _mm256_sub_pd
#define PD_MUL _mm256_mul_pd

/* ffdp_newton_delta (3-D) on 4 voxels.  diag (a constant at each call): C
 * is diagonal and every lane's G and r are finite; G C and C delta then
 * skip the products with C's zeros, which are zeros: J's sums never reach
 * -0 (they start at +0 or 1), and only |C delta| is used, so the bits are
 * the same. */
TL8_FN void inv4_delta(const __m256d r[3], const __m256d G[9], const double C[9], const int diag, __m256d d[3])
{
	__m256d J[9];
	for (int a = 0; a < 3; a++)
		for (int b = 0; b < 3; b++) {
			__m256d t = _mm256_set1_pd(a == b ? 1.0 : 0.0);
			if (diag)
				t = PD_ADD(t, PD_MUL(G[3 * a + b], _mm256_set1_pd(C[4 * b])));
			else
				for (int k = 0; k < 3; k++)
					t = PD_ADD(t, PD_MUL(G[3 * a + k], _mm256_set1_pd(C[3 * k + b])));
			J[3 * a + b] = t;
		}
	__m256d c0 = PD_SUB(PD_MUL(J[4], J[8]), PD_MUL(J[5], J[7]));
	__m256d c1 = PD_SUB(PD_MUL(J[5], J[6]), PD_MUL(J[3], J[8]));
	__m256d c2 = PD_SUB(PD_MUL(J[3], J[7]), PD_MUL(J[4], J[6]));
	__m256d det = PD_ADD(PD_ADD(PD_MUL(J[0], c0), PD_MUL(J[1], c1)), PD_MUL(J[2], c2));
	__m256d i = _mm256_div_pd(_mm256_set1_pd(1.0), det);
	__m256d a1 = PD_SUB(PD_MUL(J[2], J[7]), PD_MUL(J[1], J[8])), a2 = PD_SUB(PD_MUL(J[1], J[5]), PD_MUL(J[2], J[4]));
	__m256d b1 = PD_SUB(PD_MUL(J[0], J[8]), PD_MUL(J[2], J[6])), b2 = PD_SUB(PD_MUL(J[2], J[3]), PD_MUL(J[0], J[5]));
	__m256d e1 = PD_SUB(PD_MUL(J[1], J[6]), PD_MUL(J[0], J[7])), e2 = PD_SUB(PD_MUL(J[0], J[4]), PD_MUL(J[1], J[3]));
	__m256d n0 = PD_ADD(PD_ADD(PD_MUL(c0, r[0]), PD_MUL(a1, r[1])), PD_MUL(a2, r[2]));
	__m256d n1 = PD_ADD(PD_ADD(PD_MUL(c1, r[0]), PD_MUL(b1, r[1])), PD_MUL(b2, r[2]));
	__m256d n2 = PD_ADD(PD_ADD(PD_MUL(c2, r[0]), PD_MUL(e1, r[1])), PD_MUL(e2, r[2]));
	__m256d ok = _mm256_cmp_pd(det, _mm256_set1_pd(1e-6), _CMP_GT_OQ);
	d[0] = _mm256_blendv_pd(r[0], PD_MUL(i, n0), ok);
	d[1] = _mm256_blendv_pd(r[1], PD_MUL(i, n1), ok);
	d[2] = _mm256_blendv_pd(r[2], PD_MUL(i, n2), ok);
	/* the largest index component; max(q, s) keeps s when q is NaN, as fmax(s, q) */
	const __m256d abs = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
	__m256d sc = _mm256_setzero_pd();
	for (int a = 0; a < 3; a++) {
		__m256d q = diag ? PD_MUL(_mm256_set1_pd(C[4 * a]), d[a])
				 : PD_ADD(PD_ADD(PD_MUL(_mm256_set1_pd(C[3 * a]), d[0]),
						 PD_MUL(_mm256_set1_pd(C[3 * a + 1]), d[1])),
					  PD_MUL(_mm256_set1_pd(C[3 * a + 2]), d[2]));
		sc = _mm256_max_pd(_mm256_and_pd(q, abs), sc);
	}
	__m256d shrink = _mm256_cmp_pd(sc, _mm256_set1_pd(1.0), _CMP_GT_OQ);
	if (_mm256_movemask_pd(shrink)) /* divisions are slow; most steps are short */
		for (int a = 0; a < 3; a++)
			d[a] = _mm256_blendv_pd(d[a], _mm256_div_pd(d[a], sc), shrink);
}

/* 0 where every lane of the 8-float vectors is finite: their sum is then
 * finite or overflows (a false alarm only), and any inf or NaN makes it
 * inf or NaN. */
TL8_FN int inv8_nonfinite(const __m256 *v, int n)
{
	__m256 t = v[0];
	for (int k = 1; k < n; k++)
		t = _mm256_add_ps(t, v[k]);
	return _mm256_movemask_ps(_mm256_cmp_ps(_mm256_sub_ps(t, t), _mm256_setzero_ps(), _CMP_NEQ_UQ));
}

/* Voxels x .. x + 7 of row r, stepped while any lane is above tol (the
 * others keep their x and residual, as the scalar loop's break).  worst:
 * the lanes' max |r|.  diag (a constant): s->diag; p = i + C x and the
 * step then take its short forms while x, G and r are finite. */
TL8_FN void inv8(const inv *s, const tl8_box *b, int64_t r, int64_t x, __m256d *worst, const int diag)
{
	const int64_t j = r * s->n[0] + x;
	const double gy = (double)(s->lo[1] + r % s->n[1]), gz = (double)(s->lo[2] + r / s->n[1]);
	const double g0 = (double)(s->lo[0] + x);
	const __m256d abs = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
	const __m256d big = _mm256_set1_pd(1e308), inf = _mm256_set1_pd(INFINITY), tol = _mm256_set1_pd(s->tol);
	__m256d v[2][3], idx[2][3], e[2], act[2];
	__m256 v8[3];
	for (int c = 0; c < 3; c++)
		v8[c] = _mm256_loadu_ps(s->v[c] + j);
	int fin = diag && !inv8_nonfinite(v8, 3); /* x finite: the short p */
	for (int h = 0; h < 2; h++) {
		for (int c = 0; c < 3; c++)
			v[h][c] = _mm256_cvtps_pd(h ? _mm256_extractf128_ps(v8[c], 1) : _mm256_castps256_ps128(v8[c]));
		idx[h][0] = PD_ADD(_mm256_set1_pd(g0), _mm256_setr_pd(4 * h, 4 * h + 1, 4 * h + 2, 4 * h + 3));
		idx[h][1] = _mm256_set1_pd(gy), idx[h][2] = _mm256_set1_pd(gz);
		e[h] = _mm256_setzero_pd();
		act[h] = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
	}
	for (int k = 0; k < s->iters; k++) {
		__m256d p[2][3];
		for (int h = 0; h < 2; h++)
			for (int a = 0; a < 3; a++) {
				__m256d t = idx[h][a];
				if (fin)
					t = PD_ADD(t, PD_MUL(_mm256_set1_pd(s->C[4 * a]), v[h][a]));
				else
					for (int q = 0; q < 3; q++)
						t = PD_ADD(t, PD_MUL(_mm256_set1_pd(s->C[3 * a + q]), v[h][q]));
				p[h][a] = t;
			}
		tl8 t;
		if (!tl8_locate(b, p, &t))
			tl8_locate_pad(b, p, FFDP_PAD_BORDER, &t);
		__m256 val[3], g[3][3];
		for (int c = 0; c < 3; c++) {
			tl8_gather_loads(b, s->w[c], &t);
			val[c] = tl8_value_grad(&t, g[c]);
		}
		/* the short step needs finite G and r (x stays finite then) */
		fin = fin && !inv8_nonfinite(&g[0][0], 9) && !inv8_nonfinite(val, 3);
		for (int h = 0; h < 2; h++) {
			__m256d res[3], G[9], d[3], en = _mm256_setzero_pd();
			for (int c = 0; c < 3; c++) {
				res[c] = PD_ADD(v[h][c], tl8_half_pd(val[c], h));
				for (int q = 0; q < 3; q++)
					G[3 * c + q] = tl8_half_pd(g[c][q], h);
				/* NaN counts as the worst residual */
				__m256d ec = _mm256_and_pd(res[c], abs);
				ec = _mm256_blendv_pd(inf, ec, _mm256_cmp_pd(ec, big, _CMP_LE_OQ));
				en = _mm256_max_pd(ec, en);
			}
			e[h] = _mm256_blendv_pd(e[h], en, act[h]);
			act[h] = _mm256_andnot_pd(_mm256_cmp_pd(en, tol, _CMP_LE_OQ), act[h]);
			if (fin)
				inv4_delta(res, G, s->C, 1, d);
			else
				inv4_delta(res, G, s->C, 0, d);
			for (int c = 0; c < 3; c++)
				v[h][c] = _mm256_blendv_pd(v[h][c], PD_SUB(v[h][c], d[c]), act[h]);
		}
		if (!_mm256_movemask_pd(_mm256_or_pd(act[0], act[1])))
			break;
	}
	for (int h = 0; h < 2; h++) {
		*worst = _mm256_max_pd(e[h], *worst);
		for (int c = 0; c < 3; c++)
			_mm_storeu_ps(s->out[c] + j + 4 * h, _mm256_cvtpd_ps(v[h][c]));
	}
}

__attribute__((noinline, target("avx2,fma"))) static double inv_row_avx2(const inv *s, int64_t r)
{
	const int64_t nx = s->n[0];
	const tl8_box b = tl8_box_make(s->wlo, s->wn, s->wlo, s->wn);
	__m256d wv = _mm256_setzero_pd();
	double worst = 0.0, l[4];
	int64_t x = 0;
	if (s->diag)
		for (; x + 8 <= nx; x += 8)
			inv8(s, &b, r, x, &wv, 1);
	for (; x + 8 <= nx; x += 8)
		inv8(s, &b, r, x, &wv, 0);
	if (x < nx)
		worst = fmax(worst, inv_span_any(s, r, x, nx));
	_mm256_storeu_pd(l, wv);
	for (int k = 0; k < 4; k++)
		worst = fmax(worst, l[k]);
	return worst;
}
#endif

/* 3-D, and w's box and the points' indices within 32 bits. */
static int inv_avx2_ok(const inv *s)
{
#ifdef TL8_AVX2
	int ok = s->nc == 3 && s->wn[0] * s->wn[1] * s->wn[2] < INT32_MAX;
	for (int k = 0; k < 3; k++)
		ok &= llabs(s->wlo[k]) + s->wn[k] < ((int64_t)1 << 30);
	return ok && ffdp_cpu_use_avx2();
#else
	(void)s;
	return 0;
#endif
}

ffdp_status ffdp_cpu_invert_step(ffdp_backend *be, const ffdp_invert_args *a, double *resid, ffdp_error *err)
{
	(void)be, (void)err;
	inv s = {.C = a->C, .tol = a->tol, .nc = a->v.ncomp, .iters = a->iters > 0 ? a->iters : 1};
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
	s.diag = a->C[1] == 0.0 && a->C[2] == 0.0 && a->C[3] == 0.0 && a->C[5] == 0.0 && a->C[6] == 0.0 &&
		 a->C[7] == 0.0;
	const int64_t rows = s.n[1] * s.n[2];
	const int simd = inv_avx2_ok(&s);
	double worst = 0.0;
	(void)simd;
#pragma omp parallel for schedule(static) reduction(max : worst)
	for (int64_t r = 0; r < rows; r++) {
		double m;
#ifdef TL8_AVX2
		if (simd)
			m = inv_row_avx2(&s, r);
		else
#endif
			m = inv_span_any(&s, r, 0, s.n[0]);
		worst = m > worst ? m : worst;
	}
	*resid = worst;
	return FFDP_OK;
}

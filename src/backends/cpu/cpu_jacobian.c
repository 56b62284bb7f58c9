/* Jacobian determinant of x -> A x + u(x) on the CPU:
 *     out = det(A + (du/di) G),
 * du/di by central differences, one-sided at the box faces, 0 along an axis
 * of size 1.  2-D (two components): the 2x2 determinant of the top-left
 * blocks.
 *
 * Float arithmetic.  du/di = D S with D the raw differences and S =
 * diag(sx, sy, sz), each 1/2, 1 or 0 (a power of two or 0).  Where S and G
 * are invertible (3-D, every axis longer than 1, G not near singular):
 *     det(A + D S G) = det(H S^-1 + D) det(S) det(G),  H = A G^-1,
 * 9 additions instead of the 27 products and sums of A + D S G; H is
 * rounded to float once per call, and H S^-1, det(S) det(G) are exact
 * scalings of it.  Else A + D (S G) (S G: G's rows scaled exactly).  Rows
 * run in parallel; a row's y and z neighbours are fixed, so only x varies
 * in the inner loop (AVX2, inverse form: 8 voxels a step, the scalar path's
 * operations in its order, -ffp-contract=off: the same bits).
 * Floor: u 12 B read (the neighbour rows stay in cache) + out 4 B written
 * = 16 B/voxel (12 B in 2-D).
 */
#include <math.h>

#include "cpu_ops.h"

typedef struct jac {
	const float *u[3];
	float *out;
	int64_t n[3];
	float A[9], G[9];
	float H[9], dG; /* A G^-1 and det G, when inv */
	int nc, inv;
} jac;

/* One row of voxels: its neighbour rows, its y and z scales, and per form
 * the row's constants for the interior x (sx = 1/2). */
typedef struct jac_row {
	int64_t row, ry0, ry1, rz0, rz1;
	float sy, sz;
	int inv;
	float gx[3], gy[3], gz[3]; /* direct: S G by rows */
	float b[9], scale;         /* inverse form: H S^-1 and det(S) det(G) */
} jac_row;

/* Neighbours t-, t+ of t along an axis of size n, and 1/(t+ - t-) (0 when n == 1). */
static inline void jac_nbrs(int64_t t, int64_t n, int64_t *lo, int64_t *hi, float *s)
{
	*lo = t > 0 ? t - 1 : t;
	*hi = t < n - 1 ? t + 1 : t;
	*s = *hi - *lo == 2 ? 0.5f : (float)(*hi - *lo);
}

/* H S^-1 (column k of H over scale k) and det(S) det(G) for x scale sx. */
static inline void jac_inv_consts(const jac *s, float sx, float sy, float sz, float b[9], float *scale)
{
	for (int i = 0; i < 3; i++) {
		b[3 * i] = s->H[3 * i] / sx;
		b[3 * i + 1] = s->H[3 * i + 1] / sy;
		b[3 * i + 2] = s->H[3 * i + 2] / sz;
	}
	*scale = sx * sy * sz * s->dG;
}

static void jac_row_make(const jac *s, int64_t r, jac_row *w)
{
	int64_t nx = s->n[0], ny = s->n[1], y = r % ny, z = r / ny, ylo, yhi, zlo, zhi;
	jac_nbrs(y, ny, &ylo, &yhi, &w->sy);
	jac_nbrs(z, s->n[2], &zlo, &zhi, &w->sz);
	w->row = r * nx;
	w->ry0 = (z * ny + ylo) * nx, w->ry1 = (z * ny + yhi) * nx;
	w->rz0 = (zlo * ny + y) * nx, w->rz1 = (zhi * ny + y) * nx;
	w->inv = s->inv && w->sy != 0.0f && w->sz != 0.0f;
	for (int k = 0; k < 3; k++) {
		w->gx[k] = 0.5f * s->G[k];
		w->gy[k] = w->sy * s->G[3 + k];
		w->gz[k] = w->sz * s->G[6 + k];
	}
	if (w->inv)
		jac_inv_consts(s, 0.5f, w->sy, w->sz, w->b, &w->scale);
}

/* Cofactors along the first row. */
static inline float jac_det3(const float m[9])
{
	return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
	       m[2] * (m[3] * m[7] - m[4] * m[6]);
}

/* One voxel with x scale sx from its differences D (row c: component c). */
static inline float jac_voxel(const jac *s, const jac_row *w, const float D[9], float sx)
{
	float m[9];
	if (w->inv) {
		float b[9], scale;
		jac_inv_consts(s, sx, w->sy, w->sz, b, &scale);
		for (int e = 0; e < 9; e++)
			m[e] = b[e] + D[e];
		return jac_det3(m) * scale;
	}
	const float gx[3] = {sx * s->G[0], sx * s->G[1], sx * s->G[2]};
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++)
			m[3 * i + k] = s->A[3 * i + k] + D[3 * i] * gx[k] + D[3 * i + 1] * w->gy[k] +
				       D[3 * i + 2] * w->gz[k];
	return s->nc == 2 ? m[0] * m[4] - m[1] * m[3] : jac_det3(m);
}

/* Voxels [x0, x1) of a row. */
static void jac_span(const jac *s, const jac_row *w, int64_t x0, int64_t x1)
{
	const int64_t nx = s->n[0];
	for (int64_t x = x0; x < x1; x++) {
		int64_t xlo, xhi;
		float sx, D[9] = {0};
		jac_nbrs(x, nx, &xlo, &xhi, &sx);
		for (int c = 0; c < s->nc; c++) {
			const float *p = s->u[c];
			D[3 * c] = p[w->row + xhi] - p[w->row + xlo];
			D[3 * c + 1] = p[w->ry1 + x] - p[w->ry0 + x];
			D[3 * c + 2] = p[w->rz1 + x] - p[w->rz0 + x];
		}
		s->out[w->row + x] = jac_voxel(s, w, D, sx);
	}
}

/* H = A G^-1 and det G in double, rounded once; 0 when G is singular or
 * far from orthogonal up to scale (H would lose digits), or in 2-D. */
static int jac_inverse_form(jac *s, const double A[9], const double G[9])
{
	double C[9], det, gmax = 0, cmax = 0;
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++) {
			/* cofactor (k, i): C = adj(G) */
			int r0 = (k + 1) % 3, r1 = (k + 2) % 3, c0 = (i + 1) % 3, c1 = (i + 2) % 3;
			C[3 * i + k] = G[3 * r0 + c0] * G[3 * r1 + c1] - G[3 * r0 + c1] * G[3 * r1 + c0];
		}
	det = G[0] * C[0] + G[1] * C[3] + G[2] * C[6];
	for (int e = 0; e < 9; e++)
		gmax = fmax(gmax, fabs(G[e])), cmax = fmax(cmax, fabs(C[e]));
	if (s->nc != 3 || s->n[0] < 2 || !isfinite(det) || !(gmax * cmax <= 1e3 * fabs(det)))
		return 0;
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++)
			s->H[3 * i + k] = (float)((A[3 * i] * C[k] + A[3 * i + 1] * C[3 + k] + A[3 * i + 2] * C[6 + k]) / det);
	s->dG = (float)det;
	return 1;
}

/* ---- AVX2 --------------------------------------------------------------------
 * 3-D rows in the inverse form, voxels 1 .. nx - 2 (both x neighbours), 8
 * at a time: contiguous loads of the x-1, x+1, y and z neighbour rows; the
 * last group overlaps the one before it rather than leaving a tail (a
 * voxel's value does not depend on its group). */
#if defined(__GNUC__) && defined(__x86_64__)
#define JAC_AVX2 1
#include <immintrin.h>

#define JAC_FN static inline __attribute__((always_inline, target("avx2,fma")))

/* The neighbour rows of a row, relative to it. */
typedef struct jac8_nb {
	int64_t y0, y1, z0, z1;
} jac8_nb;

/* Row i of H S^-1 + D for 8 voxels (p at the first one in component i). */
JAC_FN void jac8_mrow(const float *p, jac8_nb nb, const __m256 b[9], int i, __m256 m[3])
{
	m[0] = _mm256_add_ps(b[3 * i], _mm256_sub_ps(_mm256_loadu_ps(p + 1), _mm256_loadu_ps(p - 1)));
	m[1] = _mm256_add_ps(b[3 * i + 1], _mm256_sub_ps(_mm256_loadu_ps(p + nb.y1), _mm256_loadu_ps(p + nb.y0)));
	m[2] = _mm256_add_ps(b[3 * i + 2], _mm256_sub_ps(_mm256_loadu_ps(p + nb.z1), _mm256_loadu_ps(p + nb.z0)));
}

/* jac_voxel of 8 voxels (p[c] at the first one in component c): rows 1
 * and 2 and their 2x2 minors first, then row 0, so few vectors are live. */
JAC_FN __m256 jac8_voxels(const float *const p[3], jac8_nb nb, const __m256 b[9], __m256 scale)
{
	__m256 m0[3], m1[3], m2[3];
	jac8_mrow(p[1], nb, b, 1, m1);
	jac8_mrow(p[2], nb, b, 2, m2);
	const __m256 t0 = _mm256_sub_ps(_mm256_mul_ps(m1[1], m2[2]), _mm256_mul_ps(m1[2], m2[1]));
	const __m256 t1 = _mm256_sub_ps(_mm256_mul_ps(m1[0], m2[2]), _mm256_mul_ps(m1[2], m2[0]));
	const __m256 t2 = _mm256_sub_ps(_mm256_mul_ps(m1[0], m2[1]), _mm256_mul_ps(m1[1], m2[0]));
	jac8_mrow(p[0], nb, b, 0, m0);
	const __m256 d = _mm256_sub_ps(_mm256_mul_ps(m0[0], t0), _mm256_mul_ps(m0[1], t1));
	return _mm256_mul_ps(_mm256_add_ps(d, _mm256_mul_ps(m0[2], t2)), scale);
}

__attribute__((noinline, target("avx2,fma"))) static void jac_row_avx2(const jac *s, const jac_row *w)
{
	const int64_t nx = s->n[0], last = nx - 9; /* the last group ends at nx - 2 */
	const jac8_nb nb = {w->ry0 - w->row, w->ry1 - w->row, w->rz0 - w->row, w->rz1 - w->row};
	const float *const u[3] = {s->u[0] + w->row, s->u[1] + w->row, s->u[2] + w->row};
	float *const out = s->out + w->row;
	const __m256 scale = _mm256_set1_ps(w->scale);
	__m256 b[9];
	for (int e = 0; e < 9; e++)
		b[e] = _mm256_set1_ps(w->b[e]);
	jac_span(s, w, 0, 1);
	for (int64_t x = 1;; x += 8) {
		x = x < last ? x : last;
		const float *const p[3] = {u[0] + x, u[1] + x, u[2] + x};
		_mm256_storeu_ps(out + x, jac8_voxels(p, nb, b, scale));
		if (x == last)
			break;
	}
	jac_span(s, w, nx - 1, nx);
}
#endif

ffdp_status ffdp_cpu_jacobian_det(ffdp_backend *be, const ffdp_vec *u, const double A[9], const double G[9],
				  ffdp_img out, ffdp_error *err)
{
	(void)be, (void)err;
	jac s = {.out = out.p, .nc = u->ncomp};
	for (int k = 0; k < 3; k++) {
		s.u[k] = k < s.nc ? u->c[k] : NULL;
		s.n[k] = u->n[k];
	}
	for (int e = 0; e < 9; e++)
		s.A[e] = (float)A[e], s.G[e] = (float)G[e];
	s.inv = jac_inverse_form(&s, A, G);
	int64_t rows = s.n[1] * s.n[2];
	int simd = s.inv && s.n[0] >= 10 && ffdp_cpu_use_avx2();
	(void)simd;
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		jac_row w;
		jac_row_make(&s, r, &w);
#ifdef JAC_AVX2
		if (simd && w.inv) {
			jac_row_avx2(&s, &w);
			continue;
		}
#endif
		jac_span(&s, &w, 0, s.n[0]);
	}
	return FFDP_OK;
}

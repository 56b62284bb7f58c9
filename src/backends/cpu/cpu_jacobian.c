/* Jacobian determinant of x -> A x + u(x) on the CPU:
 *     out = det(A + (du/di) G),
 * du/di by central differences, one-sided at the box faces, 0 along an axis
 * of size 1.  2-D (two components): the 2x2 determinant of the top-left
 * blocks.
 *
 * Float arithmetic: du/di = D s with D the raw differences and s in
 * {0, 1/2, 1} per axis, a power of two or 0, so D (s G) is D s G rounded
 * once and s folds into the rows of G per row of voxels.  Parallel over
 * rows; the y and z neighbours of a row are fixed per row, so only x
 * varies in the inner loop (AVX2: 8 voxels a step, the scalar path's
 * operations in its order, -ffp-contract=off: the same bits).
 * Floor: u 12 B read (the neighbour rows stay in cache) + out 4 B written
 * = 16 B/voxel (12 B in 2-D).
 */
#include "cpu_ops.h"

/* One row of voxels: the offsets of its neighbour rows and the scaled rows
 * of G (gx for the interior x; the faces scale G's first row themselves). */
typedef struct jac_row {
	int64_t row, ry0, ry1, rz0, rz1;
	float gx[3], gy[3], gz[3];
} jac_row;

typedef struct jac {
	const float *u[3];
	float *out;
	int64_t n[3];
	float A[9], G[9];
	int nc;
} jac;

/* Neighbours t-, t+ of t along an axis of size n, and 1/(t+ - t-) (0 when n == 1). */
static inline void jac_nbrs(int64_t t, int64_t n, int64_t *lo, int64_t *hi, float *s)
{
	*lo = t > 0 ? t - 1 : t;
	*hi = t < n - 1 ? t + 1 : t;
	*s = *hi - *lo == 2 ? 0.5f : (float)(*hi - *lo);
}

static void jac_row_make(const jac *s, int64_t r, jac_row *w)
{
	int64_t nx = s->n[0], ny = s->n[1], y = r % ny, z = r / ny, ylo, yhi, zlo, zhi;
	float sy, sz;
	jac_nbrs(y, ny, &ylo, &yhi, &sy);
	jac_nbrs(z, s->n[2], &zlo, &zhi, &sz);
	w->row = r * nx;
	w->ry0 = (z * ny + ylo) * nx, w->ry1 = (z * ny + yhi) * nx;
	w->rz0 = (zlo * ny + y) * nx, w->rz1 = (zhi * ny + y) * nx;
	for (int k = 0; k < 3; k++) {
		w->gx[k] = 0.5f * s->G[k];
		w->gy[k] = sy * s->G[3 + k];
		w->gz[k] = sz * s->G[6 + k];
	}
}

/* det(A + D gs) with gs the rows gx, gy, gz: M row by row, then cofactors
 * along the first row (2-D: the top-left 2x2). */
static inline float jac_det(const jac *s, const float D[9], const float gx[3], const float gy[3], const float gz[3])
{
	float m[9];
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++)
			m[3 * i + k] = s->A[3 * i + k] + D[3 * i] * gx[k] + D[3 * i + 1] * gy[k] + D[3 * i + 2] * gz[k];
	if (s->nc == 2)
		return m[0] * m[4] - m[1] * m[3];
	return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
	       m[2] * (m[3] * m[7] - m[4] * m[6]);
}

/* Voxels [x0, x1) of a row. */
static void jac_span(const jac *s, const jac_row *w, int64_t x0, int64_t x1)
{
	const int64_t nx = s->n[0];
	for (int64_t x = x0; x < x1; x++) {
		int64_t xlo, xhi;
		float sx, gx[3], D[9] = {0};
		jac_nbrs(x, nx, &xlo, &xhi, &sx);
		for (int k = 0; k < 3; k++)
			gx[k] = sx * s->G[k];
		for (int c = 0; c < s->nc; c++) {
			const float *p = s->u[c];
			D[3 * c] = p[w->row + xhi] - p[w->row + xlo];
			D[3 * c + 1] = p[w->ry1 + x] - p[w->ry0 + x];
			D[3 * c + 2] = p[w->rz1 + x] - p[w->rz0 + x];
		}
		s->out[w->row + x] = jac_det(s, D, gx, w->gy, w->gz);
	}
}

/* ---- AVX2 --------------------------------------------------------------------
 * 3-D, voxels 1 .. nx - 2 (both x neighbours), 8 at a time: contiguous
 * loads of the x-1, x+1, y and z neighbour rows; the last group overlaps
 * the one before it rather than leaving a tail (a voxel's value does not
 * depend on its group). */
#if defined(__GNUC__) && defined(__x86_64__)
#define JAC_AVX2 1
#include <immintrin.h>

#define JAC_FN static inline __attribute__((always_inline, target("avx2,fma")))

/* The neighbour rows of a row, relative to it. */
typedef struct jac8_nb {
	int64_t y0, y1, z0, z1;
} jac8_nb;

/* Row i of A + D gs for 8 voxels (component i's differences, p at the
 * first voxel); k holds A (0..8) and gx, gy, gz (9..17) broadcast. */
JAC_FN void jac8_mrow(const float *p, jac8_nb nb, const __m256 k[18], int i, __m256 m[3])
{
	const __m256 dx = _mm256_sub_ps(_mm256_loadu_ps(p + 1), _mm256_loadu_ps(p - 1));
	const __m256 dy = _mm256_sub_ps(_mm256_loadu_ps(p + nb.y1), _mm256_loadu_ps(p + nb.y0));
	const __m256 dz = _mm256_sub_ps(_mm256_loadu_ps(p + nb.z1), _mm256_loadu_ps(p + nb.z0));
	for (int c = 0; c < 3; c++) {
		__m256 t = _mm256_add_ps(k[3 * i + c], _mm256_mul_ps(dx, k[9 + c]));
		t = _mm256_add_ps(t, _mm256_mul_ps(dy, k[12 + c]));
		m[c] = _mm256_add_ps(t, _mm256_mul_ps(dz, k[15 + c]));
	}
}

/* jac_det of 8 voxels (p[c] at the first one in component c): rows 1 and
 * 2 and their 2x2 minors first, then row 0, so few vectors are live. */
JAC_FN __m256 jac8_det(const float *const p[3], jac8_nb nb, const __m256 k[18])
{
	__m256 m0[3], m1[3], m2[3];
	jac8_mrow(p[1], nb, k, 1, m1);
	jac8_mrow(p[2], nb, k, 2, m2);
	const __m256 t0 = _mm256_sub_ps(_mm256_mul_ps(m1[1], m2[2]), _mm256_mul_ps(m1[2], m2[1]));
	const __m256 t1 = _mm256_sub_ps(_mm256_mul_ps(m1[0], m2[2]), _mm256_mul_ps(m1[2], m2[0]));
	const __m256 t2 = _mm256_sub_ps(_mm256_mul_ps(m1[0], m2[1]), _mm256_mul_ps(m1[1], m2[0]));
	jac8_mrow(p[0], nb, k, 0, m0);
	const __m256 d = _mm256_sub_ps(_mm256_mul_ps(m0[0], t0), _mm256_mul_ps(m0[1], t1));
	return _mm256_add_ps(d, _mm256_mul_ps(m0[2], t2));
}

__attribute__((noinline, target("avx2,fma"))) static void jac_row_avx2(const jac *s, const jac_row *w)
{
	const int64_t nx = s->n[0], last = nx - 9; /* the last group ends at nx - 2 */
	const jac8_nb nb = {w->ry0 - w->row, w->ry1 - w->row, w->rz0 - w->row, w->rz1 - w->row};
	const float *const u[3] = {s->u[0] + w->row, s->u[1] + w->row, s->u[2] + w->row};
	float *const out = s->out + w->row;
	__m256 k[18];
	for (int e = 0; e < 9; e++)
		k[e] = _mm256_set1_ps(s->A[e]);
	for (int c = 0; c < 3; c++) {
		k[9 + c] = _mm256_set1_ps(w->gx[c]);
		k[12 + c] = _mm256_set1_ps(w->gy[c]);
		k[15 + c] = _mm256_set1_ps(w->gz[c]);
	}
	jac_span(s, w, 0, 1);
	for (int64_t x = 1;; x += 8) {
		x = x < last ? x : last;
		const float *const p[3] = {u[0] + x, u[1] + x, u[2] + x};
		_mm256_storeu_ps(out + x, jac8_det(p, nb, k));
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
	int64_t rows = s.n[1] * s.n[2];
	int simd = s.nc == 3 && s.n[0] >= 10 && ffdp_cpu_use_avx2();
	(void)simd;
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		jac_row w;
		jac_row_make(&s, r, &w);
#ifdef JAC_AVX2
		if (simd) {
			jac_row_avx2(&s, &w);
			continue;
		}
#endif
		jac_span(&s, &w, 0, s.n[0]);
	}
	return FFDP_OK;
}

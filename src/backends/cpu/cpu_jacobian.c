/* Jacobian determinant of x -> A x + u(x) on the CPU:
 *     out = det(A + (du/di) G),
 * du/di by central differences, one-sided at the box faces, 0 along an axis
 * of size 1.  2-D (two components): the 2x2 determinant of the top-left
 * blocks.  Parallel over rows; the y and z neighbours of a row are fixed
 * per row, so only x varies in the inner loop (AVX2: 4 voxels a step).
 * Floor: u 12 B read (the neighbour rows stay in cache) + out 4 B written
 * = 16 B/voxel (12 B in 2-D).
 */
#include "cpu_ops.h"

/* Neighbours t-, t+ of t along an axis of size n, and 1/(t+ - t-) (0 when n == 1). */
static inline void jac_nbrs(int64_t t, int64_t n, int64_t *lo, int64_t *hi, double *inv)
{
	*lo = t > 0 ? t - 1 : t;
	*hi = t < n - 1 ? t + 1 : t;
	*inv = *hi > *lo ? 1.0 / (double)(*hi - *lo) : 0.0;
}

static double det3(const double m[9])
{
	return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
	       m[2] * (m[3] * m[7] - m[4] * m[6]);
}

/* Voxels [x0, x1) of row r. */
static void jac_span(const ffdp_vec *u, const double A[9], const double G[9], float *out, int64_t r, int64_t x0,
		     int64_t x1)
{
	int64_t nx = u->n[0], ny = u->n[1], nz = u->n[2], y = r % ny, z = r / ny;
	int64_t ylo, yhi, zlo, zhi, xlo, xhi;
	double iy, iz, ix;
	int nc = u->ncomp;
	jac_nbrs(y, ny, &ylo, &yhi, &iy);
	jac_nbrs(z, nz, &zlo, &zhi, &iz);
	int64_t ry0 = (z * ny + ylo) * nx, ry1 = (z * ny + yhi) * nx;
	int64_t rz0 = (zlo * ny + y) * nx, rz1 = (zhi * ny + y) * nx, row = r * nx;
	for (int64_t x = x0; x < x1; x++) {
		double J[9] = {0}, M[9];
		jac_nbrs(x, nx, &xlo, &xhi, &ix);
		for (int c = 0; c < nc; c++) {
			const float *p = u->c[c];
			J[3 * c] = ((double)p[row + xhi] - p[row + xlo]) * ix;
			J[3 * c + 1] = ((double)p[ry1 + x] - p[ry0 + x]) * iy;
			J[3 * c + 2] = ((double)p[rz1 + x] - p[rz0 + x]) * iz;
		}
		for (int i = 0; i < 3; i++)
			for (int k = 0; k < 3; k++)
				M[3 * i + k] = A[3 * i + k] + J[3 * i] * G[k] + J[3 * i + 1] * G[3 + k] +
					       J[3 * i + 2] * G[6 + k];
		out[row + x] = (float)(nc == 3 ? det3(M) : M[0] * M[4] - M[1] * M[3]);
	}
}

/* ---- AVX2 --------------------------------------------------------------------
 * 3-D, the voxels of a row with both x neighbours (1 .. nx - 2), 4 at a
 * time in double: contiguous loads of the x-1, x+1, y and z neighbour rows,
 * every operation the scalar path's in its order, so the bits agree. */
#if defined(__GNUC__) && defined(__x86_64__)
#define JAC_AVX2 1
#include <immintrin.h>

#define JAC_AVX2_FN static inline __attribute__((always_inline, target("avx2,fma")))

JAC_AVX2_FN __m256d jac_diff(const float *p, int64_t hi, int64_t lo, __m256d inv)
{
	__m256d a = _mm256_cvtps_pd(_mm_loadu_ps(p + hi)), b = _mm256_cvtps_pd(_mm_loadu_ps(p + lo));
	return _mm256_mul_pd(_mm256_sub_pd(a, b), inv);
}

/* det(A + J G) of 4 voxels at x .. x + 3 of the row. */
JAC_AVX2_FN __m128 jac4(const ffdp_vec *u, const double A[9], const double G[9], int64_t row, int64_t ry0,
			int64_t ry1, int64_t rz0, int64_t rz1, int64_t x, __m256d iy, __m256d iz)
{
	const __m256d half = _mm256_set1_pd(0.5);
	__m256d J[9], M[9];
	for (int c = 0; c < 3; c++) {
		const float *p = u->c[c];
		J[3 * c] = jac_diff(p, row + x + 1, row + x - 1, half);
		J[3 * c + 1] = jac_diff(p, ry1 + x, ry0 + x, iy);
		J[3 * c + 2] = jac_diff(p, rz1 + x, rz0 + x, iz);
	}
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++) {
			__m256d t = _mm256_add_pd(_mm256_set1_pd(A[3 * i + k]), _mm256_mul_pd(J[3 * i], _mm256_set1_pd(G[k])));
			t = _mm256_add_pd(t, _mm256_mul_pd(J[3 * i + 1], _mm256_set1_pd(G[3 + k])));
			M[3 * i + k] = _mm256_add_pd(t, _mm256_mul_pd(J[3 * i + 2], _mm256_set1_pd(G[6 + k])));
		}
	__m256d t0 = _mm256_sub_pd(_mm256_mul_pd(M[4], M[8]), _mm256_mul_pd(M[5], M[7]));
	__m256d t1 = _mm256_sub_pd(_mm256_mul_pd(M[3], M[8]), _mm256_mul_pd(M[5], M[6]));
	__m256d t2 = _mm256_sub_pd(_mm256_mul_pd(M[3], M[7]), _mm256_mul_pd(M[4], M[6]));
	__m256d d = _mm256_sub_pd(_mm256_mul_pd(M[0], t0), _mm256_mul_pd(M[1], t1));
	return _mm256_cvtpd_ps(_mm256_add_pd(d, _mm256_mul_pd(M[2], t2)));
}

__attribute__((noinline, target("avx2,fma"))) static void jac_row_avx2(const ffdp_vec *u, const double A[9],
									const double G[9], float *out, int64_t r)
{
	int64_t nx = u->n[0], ny = u->n[1], nz = u->n[2], y = r % ny, z = r / ny;
	int64_t ylo, yhi, zlo, zhi, x = 1;
	double iy, iz;
	jac_nbrs(y, ny, &ylo, &yhi, &iy);
	jac_nbrs(z, nz, &zlo, &zhi, &iz);
	int64_t ry0 = (z * ny + ylo) * nx, ry1 = (z * ny + yhi) * nx;
	int64_t rz0 = (zlo * ny + y) * nx, rz1 = (zhi * ny + y) * nx, row = r * nx;
	__m256d viy = _mm256_set1_pd(iy), viz = _mm256_set1_pd(iz);
	jac_span(u, A, G, out, r, 0, 1);
	for (; x + 4 <= nx - 1; x += 4)
		_mm_storeu_ps(out + row + x, jac4(u, A, G, row, ry0, ry1, rz0, rz1, x, viy, viz));
	jac_span(u, A, G, out, r, x, nx);
}
#endif

ffdp_status ffdp_cpu_jacobian_det(ffdp_backend *be, const ffdp_vec *u, const double A[9], const double G[9],
				  ffdp_img out, ffdp_error *err)
{
	(void)be, (void)err;
	int64_t rows = u->n[1] * u->n[2];
	int simd = u->ncomp == 3 && u->n[0] >= 3 && ffdp_cpu_use_avx2();
	(void)simd;
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
#ifdef JAC_AVX2
		if (simd) {
			jac_row_avx2(u, A, G, out.p, r);
			continue;
		}
#endif
		jac_span(u, A, G, out.p, r, 0, u->n[0]);
	}
	return FFDP_OK;
}

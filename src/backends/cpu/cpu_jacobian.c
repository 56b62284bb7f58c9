/* Jacobian determinant of x -> A x + u(x) on the CPU:
 *     out = det(A + (du/di) G),
 * du/di by central differences, one-sided at the box faces, 0 along an axis
 * of size 1.  2-D (two components): the 2x2 determinant of the top-left
 * blocks.  Parallel over rows; the y and z neighbours of a row are fixed
 * per row, so only x varies in the inner loop.
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

static void jac_row(const ffdp_vec *u, const double A[9], const double G[9], float *out, int64_t r)
{
	int64_t nx = u->n[0], ny = u->n[1], nz = u->n[2], y = r % ny, z = r / ny;
	int64_t ylo, yhi, zlo, zhi, xlo, xhi;
	double iy, iz, ix;
	int nc = u->ncomp;
	jac_nbrs(y, ny, &ylo, &yhi, &iy);
	jac_nbrs(z, nz, &zlo, &zhi, &iz);
	int64_t ry0 = (z * ny + ylo) * nx, ry1 = (z * ny + yhi) * nx;
	int64_t rz0 = (zlo * ny + y) * nx, rz1 = (zhi * ny + y) * nx, row = r * nx;
	for (int64_t x = 0; x < nx; x++) {
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

ffdp_status ffdp_cpu_jacobian_det(ffdp_backend *be, const ffdp_vec *u, const double A[9], const double G[9],
				  ffdp_img out, ffdp_error *err)
{
	(void)be, (void)err;
	int64_t rows = u->n[1] * u->n[2];
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++)
		jac_row(u, A, G, out.p, r);
	return FFDP_OK;
}

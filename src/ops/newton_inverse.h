/* The per-voxel step of ffdp_op_invert_step (ops.h), written once for both
 * backends: C here, device code when compiled by nvcc. */
#ifndef FFDP_NEWTON_INVERSE_H
#define FFDP_NEWTON_INVERSE_H

#include <math.h>

#ifdef __CUDACC__
#define NI_FN static inline __host__ __device__
#else
#define NI_FN static inline
#endif

/* delta = (I + G C)^-1 r, or r where the determinant is <= 1e-6, then
 * shortened so that no index component of C delta exceeds one voxel.
 * G[3c + a] = dw_c/dp_a (index units), C mm -> index; nc = 2 or 3 (the
 * z row and column are ignored in 2-D). */
NI_FN void ffdp_newton_delta(const double r[3], const double G[9], const double C[9], int nc, double delta[3])
{
	double J[9];
	for (int a = 0; a < 3; a++)
		for (int b = 0; b < 3; b++) {
			double s = a == b ? 1.0 : 0.0;
			for (int k = 0; k < nc; k++)
				s += G[3 * a + k] * C[3 * k + b];
			J[3 * a + b] = s;
		}
	double det;
	if (nc == 3) {
		const double c0 = J[4] * J[8] - J[5] * J[7], c1 = J[5] * J[6] - J[3] * J[8], c2 = J[3] * J[7] - J[4] * J[6];
		det = J[0] * c0 + J[1] * c1 + J[2] * c2;
		if (det > 1e-6) {
			/* Cramer: rows of the adjugate */
			const double i = 1.0 / det;
			delta[0] = i * (c0 * r[0] + (J[2] * J[7] - J[1] * J[8]) * r[1] + (J[1] * J[5] - J[2] * J[4]) * r[2]);
			delta[1] = i * (c1 * r[0] + (J[0] * J[8] - J[2] * J[6]) * r[1] + (J[2] * J[3] - J[0] * J[5]) * r[2]);
			delta[2] = i * (c2 * r[0] + (J[1] * J[6] - J[0] * J[7]) * r[1] + (J[0] * J[4] - J[1] * J[3]) * r[2]);
		}
	} else {
		det = J[0] * J[4] - J[1] * J[3];
		if (det > 1e-6) {
			const double i = 1.0 / det;
			delta[0] = i * (J[4] * r[0] - J[1] * r[1]);
			delta[1] = i * (J[0] * r[1] - J[3] * r[0]);
			delta[2] = 0.0;
		}
	}
	if (!(det > 1e-6))
		delta[0] = r[0], delta[1] = r[1], delta[2] = nc == 3 ? r[2] : 0.0;
	double s = 0.0;
	for (int a = 0; a < nc; a++) {
		double q = 0.0;
		for (int b = 0; b < nc; b++)
			q += C[3 * a + b] * delta[b];
		s = fmax(s, fabs(q));
	}
	if (s > 1.0)
		for (int a = 0; a < 3; a++)
			delta[a] /= s;
}

#endif

/* Jacobi eigen-decomposition of a symmetric 3x3 matrix: small, robust, and
 * accurate to rounding for the moment matrices of the moments stage. */
#include <math.h>
#include <string.h>

#include "reg_internal.h"

void reg_sym3_eigen(const double A[9], double e[3], double V[9])
{
	double a[9];
	memcpy(a, A, sizeof(a));
	for (int i = 0; i < 9; i++)
		V[i] = (i % 4 == 0) ? 1.0 : 0.0;
	for (int sweep = 0; sweep < 50; sweep++) {
		double off = fabs(a[1]) + fabs(a[2]) + fabs(a[5]);
		if (off < 1e-300)
			break;
		for (int p = 0; p < 2; p++)
			for (int q = p + 1; q < 3; q++) {
				double apq = a[3 * p + q];
				if (fabs(apq) < 1e-300)
					continue;
				double theta = (a[3 * q + q] - a[3 * p + p]) / (2 * apq);
				double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
				double c = 1 / sqrt(t * t + 1), s = t * c;
				/* a <- J^T a J with the rotation J in the (p, q) plane */
				for (int k = 0; k < 3; k++) {
					double akp = a[3 * k + p], akq = a[3 * k + q];
					a[3 * k + p] = c * akp - s * akq;
					a[3 * k + q] = s * akp + c * akq;
				}
				for (int k = 0; k < 3; k++) {
					double apk = a[3 * p + k], aqk = a[3 * q + k];
					a[3 * p + k] = c * apk - s * aqk;
					a[3 * q + k] = s * apk + c * aqk;
				}
				for (int k = 0; k < 3; k++) {
					double vkp = V[3 * k + p], vkq = V[3 * k + q];
					V[3 * k + p] = c * vkp - s * vkq;
					V[3 * k + q] = s * vkp + c * vkq;
				}
			}
	}
	for (int i = 0; i < 3; i++)
		e[i] = a[4 * i];
	/* sort descending, columns of V with them */
	for (int i = 0; i < 2; i++)
		for (int j = i + 1; j < 3; j++)
			if (e[j] > e[i]) {
				double t = e[i];
				e[i] = e[j], e[j] = t;
				for (int k = 0; k < 3; k++) {
					t = V[3 * k + i];
					V[3 * k + i] = V[3 * k + j], V[3 * k + j] = t;
				}
			}
}

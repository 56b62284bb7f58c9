#include "ffdp/mat4.h"

#include <math.h>
#include <string.h>

ffdp_mat4 ffdp_mat4_identity(void)
{
	ffdp_mat4 r;
	memset(&r, 0, sizeof(r));
	r.m[0] = r.m[5] = r.m[10] = r.m[15] = 1.0;
	return r;
}

ffdp_mat4 ffdp_mat4_mul(ffdp_mat4 a, ffdp_mat4 b)
{
	ffdp_mat4 r;
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++) {
			double s = 0.0;
			for (int k = 0; k < 4; k++)
				s += a.m[4 * i + k] * b.m[4 * k + j];
			r.m[4 * i + j] = s;
		}
	return r;
}

double ffdp_mat4_det3(const ffdp_mat4 *a)
{
	const double *m = a->m;
	return m[0] * (m[5] * m[10] - m[6] * m[9]) -
	       m[1] * (m[4] * m[10] - m[6] * m[8]) +
	       m[2] * (m[4] * m[9] - m[5] * m[8]);
}

ffdp_status ffdp_mat4_inverse(ffdp_mat4 a, ffdp_mat4 *out, ffdp_error *err)
{
	const double *m = a.m;
	double det = ffdp_mat4_det3(&a);
	double scale = 0.0;
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			scale = fmax(scale, fabs(m[4 * i + j]));
	/* Relative test: a 1 µm voxel matrix is fine, a rank-deficient one is not. */
	if (!(fabs(det) > 1e-12 * scale * scale * scale) || !isfinite(det))
		return ffdp_fail(err, FFDP_ERR_ARG, "matrix is singular (det = %g)", det);
	ffdp_mat4 r = ffdp_mat4_identity();
	double *o = r.m;
	o[0] = (m[5] * m[10] - m[6] * m[9]) / det;
	o[1] = (m[2] * m[9] - m[1] * m[10]) / det;
	o[2] = (m[1] * m[6] - m[2] * m[5]) / det;
	o[4] = (m[6] * m[8] - m[4] * m[10]) / det;
	o[5] = (m[0] * m[10] - m[2] * m[8]) / det;
	o[6] = (m[2] * m[4] - m[0] * m[6]) / det;
	o[8] = (m[4] * m[9] - m[5] * m[8]) / det;
	o[9] = (m[1] * m[8] - m[0] * m[9]) / det;
	o[10] = (m[0] * m[5] - m[1] * m[4]) / det;
	for (int i = 0; i < 3; i++)
		o[4 * i + 3] = -(o[4 * i] * m[3] + o[4 * i + 1] * m[7] + o[4 * i + 2] * m[11]);
	*out = r;
	return FFDP_OK;
}

ffdp_mat4 ffdp_mat4_from_linear(const double lin[9], const double t[3])
{
	ffdp_mat4 r = ffdp_mat4_identity();
	for (int i = 0; i < 3; i++) {
		for (int j = 0; j < 3; j++)
			r.m[4 * i + j] = lin[3 * i + j];
		r.m[4 * i + 3] = t[i];
	}
	return r;
}

void ffdp_mat4_apply_point(const ffdp_mat4 *a, const double x[3], double y[3])
{
	double r[3];
	for (int i = 0; i < 3; i++)
		r[i] = a->m[4 * i] * x[0] + a->m[4 * i + 1] * x[1] + a->m[4 * i + 2] * x[2] + a->m[4 * i + 3];
	y[0] = r[0], y[1] = r[1], y[2] = r[2];
}

void ffdp_mat4_apply_vector(const ffdp_mat4 *a, const double x[3], double y[3])
{
	double r[3];
	for (int i = 0; i < 3; i++)
		r[i] = a->m[4 * i] * x[0] + a->m[4 * i + 1] * x[1] + a->m[4 * i + 2] * x[2];
	y[0] = r[0], y[1] = r[1], y[2] = r[2];
}

double ffdp_mat4_max_abs_diff(const ffdp_mat4 *a, const ffdp_mat4 *b)
{
	double d = 0.0;
	for (int i = 0; i < 16; i++)
		d = fmax(d, fabs(a->m[i] - b->m[i]));
	return d;
}

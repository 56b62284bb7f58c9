/* Pointwise maps and reductions (ops.h): one pass each, double arithmetic
 * rounded once to float.  IO floors: affine_scalar and clamp 8 B/voxel, mul 12, minmax
 * 4 B/voxel, vec_linear 8 B per voxel and component, max_abs_diff 8 B per
 * voxel and component. */
#include <math.h>

#include "../../ops/unorm16.h"
#include "cpu_ops.h"

static int64_t voxels(const int64_t n[3])
{
	return n[0] * n[1] * n[2];
}

ffdp_status ffdp_cpu_affine_scalar(ffdp_backend *be, ffdp_img x, double a, double b, ffdp_error *err)
{
	(void)be, (void)err;
	const int64_t n = voxels(x.n);
	float *p = x.p;
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++)
		p[i] = (float)(a * (double)p[i] + b);
	return FFDP_OK;
}

ffdp_status ffdp_cpu_clamp(ffdp_backend *be, ffdp_img x, double lo, double hi, ffdp_error *err)
{
	(void)be, (void)err;
	const int64_t n = voxels(x.n);
	const float l = (float)lo, h = (float)hi;
	float *p = x.p;
	/* compared in double, as the CUDA kernel: a float between two
	 * bounds that round to it keeps its bits */
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++)
		p[i] = (double)p[i] < lo ? l : (double)p[i] > hi ? h : p[i];
	return FFDP_OK;
}

ffdp_status ffdp_cpu_mul(ffdp_backend *be, ffdp_img x, ffdp_img y, ffdp_error *err)
{
	(void)be, (void)err;
	const int64_t n = voxels(x.n);
	float *p = x.p;
	const float *q = y.p;
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++)
		p[i] = p[i] * q[i];
	return FFDP_OK;
}

ffdp_status ffdp_cpu_unorm16(ffdp_backend *be, float *x, uint16_t *q, int64_t n, int pack, ffdp_error *err)
{
	(void)be, (void)err;
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++) {
		if (pack)
			q[i] = ffdp_unorm16_of(x[i]);
		else
			x[i] = ffdp_unorm16_value(q[i]);
	}
	return FFDP_OK;
}

ffdp_status ffdp_cpu_minmax(ffdp_backend *be, ffdp_img x, double *lo, double *hi, ffdp_error *err)
{
	(void)be, (void)err;
	const int64_t n = voxels(x.n);
	const float *p = x.p;
	float l = INFINITY, h = -INFINITY;
	/* comparisons are false for NaN, which is therefore skipped */
#pragma omp parallel for reduction(min : l) reduction(max : h) schedule(static)
	for (int64_t i = 0; i < n; i++) {
		l = p[i] < l ? p[i] : l;
		h = p[i] > h ? p[i] : h;
	}
	if (l > h)
		l = h = NAN; /* no voxel was a number */
	*lo = l, *hi = h;
	return FFDP_OK;
}

/* 2-D: the upper-left 2x2 of A; 3-D: all of it. */
ffdp_status ffdp_cpu_vec_linear(ffdp_backend *be, ffdp_vec in, const double A[9], ffdp_vec out, ffdp_error *err)
{
	(void)be, (void)err;
	const int64_t n = voxels(in.n);
	const double a[9] = {A[0], A[1], A[2], A[3], A[4], A[5], A[6], A[7], A[8]};
	if (in.ncomp == 2) {
		float *x = in.c[0], *y = in.c[1], *ox = out.c[0], *oy = out.c[1];
#pragma omp parallel for schedule(static)
		for (int64_t i = 0; i < n; i++) {
			const double u = x[i], v = y[i];
			ox[i] = (float)(a[0] * u + a[1] * v);
			oy[i] = (float)(a[3] * u + a[4] * v);
		}
		return FFDP_OK;
	}
	float *x = in.c[0], *y = in.c[1], *z = in.c[2], *ox = out.c[0], *oy = out.c[1], *oz = out.c[2];
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++) {
		const double u = x[i], v = y[i], w = z[i];
		ox[i] = (float)(a[0] * u + a[1] * v + a[2] * w);
		oy[i] = (float)(a[3] * u + a[4] * v + a[5] * w);
		oz[i] = (float)(a[6] * u + a[7] * v + a[8] * w);
	}
	return FFDP_OK;
}

ffdp_status ffdp_cpu_vec_max_abs_diff(ffdp_backend *be, ffdp_vec a, ffdp_vec b, double *out, ffdp_error *err)
{
	(void)be, (void)err;
	const int64_t n = voxels(a.n);
	double m = 0.0;
	for (int c = 0; c < a.ncomp; c++) {
		const float *p = a.c[c], *q = b.c[c];
#pragma omp parallel for reduction(max : m) schedule(static)
		for (int64_t i = 0; i < n; i++) {
			double d = fabs((double)p[i] - (double)q[i]);
			d = d == d ? d : INFINITY; /* NaN: not converged */
			m = d > m ? d : m;
		}
	}
	*out = m;
	return FFDP_OK;
}

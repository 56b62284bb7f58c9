/* Pointwise maps and reductions (ops.h): grid-stride loops over the flat
 * index, double arithmetic with explicit rounding (__dmul_rn / __dadd_rn
 * forbid fused multiply-adds) so that the bits match the CPU's.
 * Reductions: minmax leaves one (min, max) pair per block for the host to
 * finish (O(blocks) scratch); max_abs_diff uses the shared block maximum. */
#include <stdlib.h>

#include "cuda_common.cuh"
#include "../../ops/unorm16.h"

static int64_t voxels(const int64_t n[3])
{
	return n[0] * n[1] * n[2];
}

/* One grid-stride kernel over n values, launched and checked. */
template <typename... P, typename... A>
static ffdp_status flat_launch(void (*kern)(P...), int64_t n, const char *what, ffdp_error *err, A... args)
{
	const cu_shape sh = cu_flat_shape(n, 0);
	kern<<<sh.grid, sh.block>>>(args...);
	return cu_launched(err, what);
}

__global__ void unorm16_kernel(float *x, uint16_t *q, int64_t n, int pack)
{
	CU_FOR_FLAT(i, n)
	{
		if (pack)
			q[i] = ffdp_unorm16_of(x[i]);
		else
			x[i] = ffdp_unorm16_value(q[i]);
	}
}

ffdp_status ffdp_cuda_unorm16(ffdp_backend *be, float *x, uint16_t *q, int64_t n, int pack, ffdp_error *err)
{
	(void)be;
	return flat_launch(unorm16_kernel, n, pack ? "unorm16_pack" : "unorm16_unpack", err, x, q, n, pack);
}

__global__ void affine_scalar_kernel(float *x, int64_t n, double a, double b)
{
	CU_FOR_FLAT(i, n)
	x[i] = (float)__dadd_rn(__dmul_rn(a, (double)x[i]), b);
}

ffdp_status ffdp_cuda_affine_scalar(ffdp_backend *be, ffdp_img x, double a, double b, ffdp_error *err)
{
	(void)be;
	const int64_t n = voxels(x.n);
	return flat_launch(affine_scalar_kernel, n, "affine_scalar", err, x.p, n, a, b);
}

__global__ void clamp_kernel(float *x, int64_t n, double lo, double hi)
{
	const float l = (float)lo, h = (float)hi;
	CU_FOR_FLAT(i, n)
	{
		const float v = x[i];
		x[i] = (double)v < lo ? l : (double)v > hi ? h : v; /* NaN: neither, kept */
	}
}

ffdp_status ffdp_cuda_clamp(ffdp_backend *be, ffdp_img x, double lo, double hi, ffdp_error *err)
{
	(void)be;
	const int64_t n = voxels(x.n);
	return flat_launch(clamp_kernel, n, "clamp", err, x.p, n, lo, hi);
}

__global__ void mul_kernel(float *x, const float *y, int64_t n)
{
	CU_FOR_FLAT(i, n)
	x[i] = __fmul_rn(x[i], y[i]);
}

ffdp_status ffdp_cuda_mul(ffdp_backend *be, ffdp_img x, ffdp_img y, ffdp_error *err)
{
	(void)be;
	const int64_t n = voxels(x.n);
	return flat_launch(mul_kernel, n, "mul", err, x.p, (const float *)y.p, n);
}

/* part[2 b] = block b's min, part[2 b + 1] its max (NaN skipped: fminf and
 * fmaxf return the other operand). */
__global__ void minmax_kernel(const float *x, int64_t n, float *part)
{
	__shared__ float slo[32], shi[32];
	float lo = INFINITY, hi = -INFINITY;
	CU_FOR_FLAT(i, n)
	{
		lo = fminf(lo, x[i]);
		hi = fmaxf(hi, x[i]);
	}
	const int tid = cu_tid(), lane = tid & 31, warp = tid >> 5;
	for (int off = 16; off > 0; off >>= 1) {
		lo = fminf(lo, __shfl_down_sync(0xffffffffu, lo, off));
		hi = fmaxf(hi, __shfl_down_sync(0xffffffffu, hi, off));
	}
	if (lane == 0)
		slo[warp] = lo, shi[warp] = hi;
	__syncthreads();
	if (tid == 0) {
		for (int w = 1; w < cu_nwarps(); w++)
			lo = fminf(lo, slo[w]), hi = fmaxf(hi, shi[w]);
		part[2 * blockIdx.x] = lo;
		part[2 * blockIdx.x + 1] = hi;
	}
}

ffdp_status ffdp_cuda_minmax(ffdp_backend *be, ffdp_img x, double *lo, double *hi, ffdp_error *err)
{
	(void)be;
	const int64_t n = voxels(x.n);
	const cu_shape sh = cu_flat_shape(n, cu_reduce_blocks());
	const size_t nb = sh.grid.x, bytes = 2 * nb * sizeof(float);
	float *d = (float *)cu_scratch(bytes, 0, err, "minmax");
	if (!d)
		return FFDP_ERR_NOMEM;
	float *h = (float *)malloc(bytes);
	ffdp_status s = h ? FFDP_OK : ffdp_fail(err, FFDP_ERR_NOMEM, "minmax: no host memory");
	if (!s) {
		minmax_kernel<<<sh.grid, sh.block>>>(x.p, n, d);
		s = cu_launched(err, "minmax");
	}
	if (!s)
		s = cu_fetch(h, d, bytes, err, "minmax");
	if (!s) {
		float l = INFINITY, u = -INFINITY;
		for (size_t b = 0; b < nb; b++)
			l = fminf(l, h[2 * b]), u = fmaxf(u, h[2 * b + 1]);
		if (l > u)
			l = u = NAN; /* no voxel was a number */
		*lo = l, *hi = u;
	}
	free(h);
	cu_scratch_free(d);
	return s;
}

typedef struct mat3 {
	double a[9];
} mat3;

/* ncomp 2: rows 0, 1 and columns 0, 1 of A only, as on the CPU. */
__global__ void vec_linear_kernel(const float *x, const float *y, const float *z, mat3 A, int ncomp, int64_t n,
				  float *ox, float *oy, float *oz)
{
	const double *a = A.a;
	CU_FOR_FLAT(i, n)
	{
		const double u = x[i], v = y[i];
		if (ncomp == 2) {
			const double r0 = __dadd_rn(__dmul_rn(a[0], u), __dmul_rn(a[1], v));
			const double r1 = __dadd_rn(__dmul_rn(a[3], u), __dmul_rn(a[4], v));
			ox[i] = (float)r0, oy[i] = (float)r1;
			continue;
		}
		const double w = z[i];
		const double r0 = __dadd_rn(__dadd_rn(__dmul_rn(a[0], u), __dmul_rn(a[1], v)), __dmul_rn(a[2], w));
		const double r1 = __dadd_rn(__dadd_rn(__dmul_rn(a[3], u), __dmul_rn(a[4], v)), __dmul_rn(a[5], w));
		const double r2 = __dadd_rn(__dadd_rn(__dmul_rn(a[6], u), __dmul_rn(a[7], v)), __dmul_rn(a[8], w));
		ox[i] = (float)r0, oy[i] = (float)r1, oz[i] = (float)r2;
	}
}

ffdp_status ffdp_cuda_vec_linear(ffdp_backend *be, ffdp_vec in, const double A[9], ffdp_vec out, ffdp_error *err)
{
	(void)be;
	const int64_t n = voxels(in.n);
	mat3 m;
	memcpy(m.a, A, sizeof(m.a));
	return flat_launch(vec_linear_kernel, n, "vec_linear", err, (const float *)in.c[0], (const float *)in.c[1],
			   (const float *)in.c[2], m, in.ncomp, n, out.c[0], out.c[1], out.c[2]);
}

__global__ void max_abs_diff_kernel(const float *a, const float *b, int64_t n, unsigned long long *out)
{
	double m = 0.0;
	CU_FOR_FLAT(i, n)
	{
		double d = fabs((double)a[i] - (double)b[i]);
		d = d == d ? d : INFINITY; /* NaN: not converged */
		m = fmax(m, d);
	}
	cu_block_max_nonneg(m, out);
}

ffdp_status ffdp_cuda_vec_max_abs_diff(ffdp_backend *be, ffdp_vec a, ffdp_vec b, double *out, ffdp_error *err)
{
	(void)be;
	const int64_t n = voxels(a.n);
	unsigned long long *d = (unsigned long long *)cu_scratch(sizeof(*d), 1, err, "vec_max_abs_diff");
	if (!d)
		return FFDP_ERR_NOMEM;
	const cu_shape sh = cu_flat_shape(n, cu_reduce_blocks());
	ffdp_status s = FFDP_OK;
	for (int c = 0; c < a.ncomp && !s; c++) {
		max_abs_diff_kernel<<<sh.grid, sh.block>>>(a.c[c], b.c[c], n, d);
		s = cu_launched(err, "vec_max_abs_diff");
	}
	unsigned long long bits = 0;
	if (!s)
		s = cu_fetch(&bits, d, sizeof(bits), err, "vec_max_abs_diff");
	if (!s)
		*out = cu_bits_double(bits);
	cu_scratch_free(d);
	return s;
}

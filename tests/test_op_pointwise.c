/* Pointwise ops on the CPU against plain double references: affine_scalar,
 * clamp, mul and vec_linear bit for bit (the ops promise rounding as written), minmax
 * and vec_max_abs_diff exactly, NaN rules, in-place vec_linear, 2-D
 * fields, odd sizes, 1 and 3 threads, argument checks, and buffer copy. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static float *fnew(int64_t n)
{
	return calloc((size_t)n, sizeof(float));
}

static int64_t count_diff(const float *a, const float *b, int64_t n)
{
	int64_t k = 0;
	for (int64_t i = 0; i < n; i++)
		k += memcmp(&a[i], &b[i], sizeof(float)) != 0;
	return k;
}

static void test_affine_scalar(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz)
{
	ffdp_error err = {0};
	int64_t n = nx * ny * nz;
	float *x = fnew(n), *ref = fnew(n);
	tu_fill_uniform(rng, x, n, -300.0, 1700.0);
	const double a = 1.0 / 1999.7, b = 0.1234567;
	for (int64_t i = 0; i < n; i++) {
		double p = a * (double)x[i];
		ref[i] = (float)(p + b);
	}
	ffdp_img v = {x, {nx, ny, nz}};
	CHECK_OK(ffdp_op_affine_scalar(be, v, a, b, &err), &err, "affine_scalar %lldx%lldx%lld runs", (long long)nx,
		 (long long)ny, (long long)nz);
	CHECK(count_diff(x, ref, n) == 0, "affine_scalar %lldx%lldx%lld: a x + b bit for bit", (long long)nx,
	      (long long)ny, (long long)nz);
	free(x), free(ref);
}

/* Bounds that are not floats: a value between (float)lo and lo keeps its
 * bits (the op compares in double); NaN stays NaN. */
static void test_clamp(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz)
{
	ffdp_error err = {0};
	int64_t n = nx * ny * nz;
	float *x = fnew(n), *ref = fnew(n);
	tu_fill_uniform(rng, x, n, -2.0, 3.0);
	const double lo = -0.1 / 3.0, hi = 1.0 + 1e-9;
	x[0] = NAN, x[n - 1] = (float)lo;
	for (int64_t i = 0; i < n; i++)
		ref[i] = isnan(x[i]) ? x[i] : (double)x[i] < lo ? (float)lo : (double)x[i] > hi ? (float)hi : x[i];
	ffdp_img v = {x, {nx, ny, nz}};
	CHECK_OK(ffdp_op_clamp(be, v, lo, hi, &err), &err, "clamp %lldx%lldx%lld runs", (long long)nx, (long long)ny,
		 (long long)nz);
	CHECK(count_diff(x, ref, n) == 0, "clamp %lldx%lldx%lld: bit for bit, NaN kept", (long long)nx, (long long)ny,
	      (long long)nz);
	CHECK(ffdp_op_clamp(be, v, 1.0, 0.0, &err) == FFDP_ERR_ARG && strstr(err.msg, "clamp"),
	      "clamp: hi < lo refused (%s)", err.msg);
	free(x), free(ref);
}

static void test_mul(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz)
{
	ffdp_error err = {0};
	int64_t n = nx * ny * nz;
	float *x = fnew(n), *y = fnew(n), *ref = fnew(n);
	tu_fill_uniform(rng, x, n, -3.0, 5.0);
	tu_fill_uniform(rng, y, n, 0.0, 1.0);
	for (int64_t i = 0; i < n; i++)
		ref[i] = (float)((double)x[i] * (double)y[i]); /* exact in double: one rounding */
	ffdp_img v = {x, {nx, ny, nz}}, w = {y, {nx, ny, nz}}, other = {y, {nx, ny, nz + 1}};
	CHECK_OK(ffdp_op_mul(be, v, w, &err), &err, "mul %lldx%lldx%lld runs", (long long)nx, (long long)ny,
		 (long long)nz);
	CHECK(count_diff(x, ref, n) == 0, "mul %lldx%lldx%lld: x y bit for bit", (long long)nx, (long long)ny,
	      (long long)nz);
	CHECK(ffdp_op_mul(be, v, other, &err) == FFDP_ERR_ARG, "mul: sizes must match (%s)", err.msg);
	free(x), free(y), free(ref);
}

static void test_minmax(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz)
{
	ffdp_error err = {0};
	int64_t n = nx * ny * nz;
	float *x = fnew(n);
	tu_fill_uniform(rng, x, n, -5.0, 9.0);
	x[n / 3] = -7.25f, x[n - 1] = 11.5f;
	double rlo = INFINITY, rhi = -INFINITY;
	for (int64_t i = 0; i < n; i++)
		rlo = fmin(rlo, x[i]), rhi = fmax(rhi, x[i]);
	x[0] = NAN, x[n / 2] = NAN; /* skipped (neither is an extreme) */
	double lo = 0, hi = 0;
	ffdp_img v = {x, {nx, ny, nz}};
	CHECK_OK(ffdp_op_minmax(be, v, &lo, &hi, &err), &err, "minmax %lldx%lldx%lld runs", (long long)nx,
		 (long long)ny, (long long)nz);
	CHECK(lo == rlo && hi == rhi, "minmax %lldx%lldx%lld = [%g, %g] (reference [%g, %g]), NaN skipped",
	      (long long)nx, (long long)ny, (long long)nz, lo, hi, rlo, rhi);
	for (int64_t i = 0; i < n; i++)
		x[i] = NAN;
	CHECK(!ffdp_op_minmax(be, v, &lo, &hi, &err) && isnan(lo) && isnan(hi), "minmax of an all-NaN image is NaN");
	free(x);
}

static tfield tf_new(tu_rng *rng, int64_t nx, int64_t ny, int64_t nz)
{
	tfield f = tu_field_new(nx, ny, nz);
	for (int c = 0; c < f.nc; c++)
		tu_fill_uniform(rng, f.c[c], f.nv, -4.0, 4.0);
	return f;
}

/* Reference A x per voxel, products summed left to right in double. */
static void ref_linear(const tfield *in, const double A[9], tfield *out)
{
	for (int64_t i = 0; i < in->nv; i++) {
		double x[3] = {in->c[0][i], in->c[1][i], in->nc > 2 ? in->c[2][i] : 0.0};
		for (int r = 0; r < in->nc; r++) {
			double s = A[3 * r] * x[0];
			s = s + A[3 * r + 1] * x[1];
			if (in->nc > 2)
				s = s + A[3 * r + 2] * x[2];
			out->c[r][i] = (float)s;
		}
	}
}

static void test_vec_linear(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz)
{
	ffdp_error err = {0};
	const double A[9] = {0.93, -0.21, 0.05, 0.18, 1.07, -0.11, -0.04, 0.09, 0.98};
	tfield in = tf_new(rng, nx, ny, nz), out = tf_new(rng, nx, ny, nz), ref = tf_new(rng, nx, ny, nz);
	ref_linear(&in, A, &ref);
	CHECK_OK(ffdp_op_vec_linear(be, tu_field_vec(&in), A, tu_field_vec(&out), &err), &err, "vec_linear %lldx%lldx%lld runs",
		 (long long)nx, (long long)ny, (long long)nz);
	int64_t bad = 0;
	for (int c = 0; c < in.nc; c++)
		bad += count_diff(out.c[c], ref.c[c], in.nv);
	CHECK(bad == 0, "vec_linear %lldx%lldx%lld (%d components): A x bit for bit", (long long)nx, (long long)ny,
	      (long long)nz, in.nc);
	/* in place: out is in itself */
	CHECK_OK(ffdp_op_vec_linear(be, tu_field_vec(&in), A, tu_field_vec(&in), &err), &err, "vec_linear in place runs");
	bad = 0;
	for (int c = 0; c < in.nc; c++)
		bad += count_diff(in.c[c], ref.c[c], in.nv);
	CHECK(bad == 0, "vec_linear %lldx%lldx%lld in place equals out of place", (long long)nx, (long long)ny,
	      (long long)nz);
	tu_field_free(&in), tu_field_free(&out), tu_field_free(&ref);
}

static void test_max_abs_diff(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz)
{
	ffdp_error err = {0};
	tfield a = tf_new(rng, nx, ny, nz), b = tf_new(rng, nx, ny, nz);
	b.c[a.nc - 1][a.nv / 2] = a.c[a.nc - 1][a.nv / 2] + 9.5f; /* the largest, in the last component */
	double ref = 0;
	for (int c = 0; c < a.nc; c++)
		for (int64_t i = 0; i < a.nv; i++)
			ref = fmax(ref, fabs((double)a.c[c][i] - (double)b.c[c][i]));
	double m = -1;
	CHECK_OK(ffdp_op_vec_max_abs_diff(be, tu_field_vec(&a), tu_field_vec(&b), &m, &err), &err, "max_abs_diff runs");
	CHECK(m == ref, "max_abs_diff %lldx%lldx%lld = %.9g (reference %.9g)", (long long)nx, (long long)ny,
	      (long long)nz, m, ref);
	CHECK(!ffdp_op_vec_max_abs_diff(be, tu_field_vec(&a), tu_field_vec(&a), &m, &err) && m == 0.0,
	      "max_abs_diff of a field with itself is 0");
	b.c[0][1] = NAN;
	CHECK(!ffdp_op_vec_max_abs_diff(be, tu_field_vec(&a), tu_field_vec(&b), &m, &err) && isinf(m) && m > 0,
	      "max_abs_diff with a NaN is +inf");
	tu_field_free(&a), tu_field_free(&b);
}

static void test_args(ffdp_backend *be, tu_rng *rng)
{
	ffdp_error err = {0};
	tfield a = tf_new(rng, 5, 4, 3), b = tf_new(rng, 5, 4, 3), c = tf_new(rng, 5, 4, 2);
	const double I[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
	ffdp_vec va = tu_field_vec(&a), vb = tu_field_vec(&b), swapped = tu_field_vec(&a);
	swapped.c[0] = a.c[1], swapped.c[1] = a.c[0];
	double m;
	CHECK(ffdp_op_vec_linear(be, va, I, swapped, &err) == FFDP_ERR_ARG, "vec_linear: a partial alias is refused");
	CHECK(ffdp_op_vec_linear(be, va, I, tu_field_vec(&c), &err) == FFDP_ERR_ARG, "vec_linear: sizes must match");
	CHECK(ffdp_op_vec_max_abs_diff(be, va, tu_field_vec(&c), &m, &err) == FFDP_ERR_ARG, "max_abs_diff: sizes must match");
	CHECK(ffdp_op_vec_max_abs_diff(be, va, vb, NULL, &err) == FFDP_ERR_ARG, "max_abs_diff: needs an output");
	ffdp_img empty = {NULL, {5, 4, 3}};
	CHECK(ffdp_op_affine_scalar(be, empty, 1, 0, &err) == FFDP_ERR_ARG, "affine_scalar: empty view refused");
	CHECK(ffdp_op_minmax(be, (ffdp_img){a.c[0], {5, 4, 3}}, NULL, &m, &err) == FFDP_ERR_ARG,
	      "minmax: needs both outputs");
	tu_field_free(&a), tu_field_free(&b), tu_field_free(&c);
}

static void test_buffers(ffdp_backend *be)
{
	ffdp_error err = {0};
	CHECK(ffdp_backend_host_memory(be) == 1, "the CPU backend's buffers are host memory");
	float src[37], *dst = ffdp_buf_alloc(be, sizeof(src), &err);
	for (int i = 0; i < 37; i++)
		src[i] = (float)i * 0.5f - 3.0f;
	CHECK_OK(ffdp_buf_copy(be, dst, src, sizeof(src), &err), &err, "buffer copy runs");
	CHECK(dst && memcmp(dst, src, sizeof(src)) == 0, "buffer copy copies");
	ffdp_buf_free(be, dst);
}

int main(void)
{
	ffdp_error err = {0};
	ffdp_backend *be = NULL;
	if (ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err))
		return 1;
	tu_rng rng = tu_rng_make(4242);
	static const int64_t sizes[][3] = {{17, 13, 11}, {33, 29, 1}, {1, 1, 1}, {64, 3, 5}};
	for (int threads = 1; threads <= 3; threads += 2) {
		omp_set_num_threads(threads);
		printf("-- %d thread(s)\n", threads);
		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			const int64_t *n = sizes[k];
			test_affine_scalar(be, &rng, n[0], n[1], n[2]);
			if (n[0] * n[1] * n[2] > 1)
				test_clamp(be, &rng, n[0], n[1], n[2]);
			test_mul(be, &rng, n[0], n[1], n[2]);
			if (n[0] * n[1] * n[2] > 2)
				test_minmax(be, &rng, n[0], n[1], n[2]);
			test_vec_linear(be, &rng, n[0], n[1], n[2]);
			if (n[0] * n[1] * n[2] > 2)
				test_max_abs_diff(be, &rng, n[0], n[1], n[2]);
		}
	}
	test_args(be, &rng);
	test_buffers(be);
	ffdp_backend_close(be);
	return check_done();
}

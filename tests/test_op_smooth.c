/* Gaussian smoothing against a brute-force 3-D convolution in double:
 * several sigma per axis (0 included), truncation, both face modes, odd
 * sizes, 2-D, vector fields, 1..4 threads; the same bits whatever the thread
 * count (slabs of planes, or of rows in 2-D) and with the scalar kernels. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_count.h"
#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

/* Sampled Gaussian taps k = -r..r normalised to 1; r = 0 for a skipped axis. */
static int ref_kernel(double sigma, double truncate, int64_t n, double *w)
{
	if (sigma == 0.0 || n == 1) {
		w[0] = 1.0;
		return 0;
	}
	int r = (int)ceil((truncate > 0 ? truncate : 2.0) * sigma);
	double s = 0;
	for (int k = -r; k <= r; k++)
		s += w[k + r] = exp(-(double)k * k / (2 * sigma * sigma));
	for (int k = -r; k <= r; k++)
		w[k + r] /= s;
	return r;
}

/* out(i) = sum_k w(k) x(i+k) over k inside the box [/ sum of those w(k)]. */
static void ref_smooth(const float *x, const int64_t n[3], const ffdp_smooth_opts *o, double *out)
{
	double w[3][256];
	int r[3];
	for (int a = 0; a < 3; a++)
		r[a] = ref_kernel(o->sigma[a], o->truncate, n[a], w[a]);
	for (int64_t z = 0; z < n[2]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t xx = 0; xx < n[0]; xx++) {
				double acc = 0, mass = 0;
				for (int kz = -r[2]; kz <= r[2]; kz++) {
					int64_t zz = z + kz;
					if (zz < 0 || zz >= n[2])
						continue;
					for (int ky = -r[1]; ky <= r[1]; ky++) {
						int64_t yy = y + ky;
						if (yy < 0 || yy >= n[1])
							continue;
						for (int kx = -r[0]; kx <= r[0]; kx++) {
							int64_t x3 = xx + kx;
							if (x3 < 0 || x3 >= n[0])
								continue;
							double wt = w[2][kz + r[2]] * w[1][ky + r[1]] * w[0][kx + r[0]];
							acc += wt * x[(zz * n[1] + yy) * n[0] + x3];
							mass += wt;
						}
					}
				}
				out[(z * n[1] + y) * n[0] + xx] = o->renormalize ? acc / mass : acc;
			}
}

static double run_case(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz,
		       const ffdp_smooth_opts *o, ffdp_status *st, ffdp_error *err)
{
	int64_t n[3] = {nx, ny, nz}, nv = nx * ny * nz;
	float *x = malloc((size_t)nv * sizeof(float));
	double *ref = malloc((size_t)nv * sizeof(double));
	tu_fill_uniform(rng, x, nv, -1.0, 2.0);
	ref_smooth(x, n, o, ref);
	ffdp_img img = {x, {nx, ny, nz}};
	*st = ffdp_op_smooth(be, img, o, err);
	double e = tu_rel_err(x, ref, nv, 1e-30);
	free(x);
	free(ref);
	return e;
}

static void test_against_reference(ffdp_backend *be, tu_rng *rng)
{
	static const struct {
		int64_t n[3];
		double sigma[3], truncate;
	} cases[] = {
		{{17, 23, 11}, {1.0, 1.5, 0.7}, 0.0},  {{17, 23, 11}, {0.0, 2.2, 1.3}, 0.0},
		{{17, 23, 11}, {0.5, 0.0, 0.0}, 3.0},  {{17, 23, 11}, {3.0, 3.0, 3.0}, 0.0},
		{{17, 23, 11}, {1.7, 0.8, 2.4}, 1.2},  {{17, 23, 3}, {1.2, 1.0, 0.9}, 2.5},
		{{5, 40, 37}, {4.0, 0.6, 1.1}, 0.0},   {{70, 3, 9}, {0.9, 2.0, 0.0}, 4.0},
		{{31, 19, 1}, {1.3, 2.1, 0.0}, 0.0},   {{31, 19, 1}, {0.0, 0.8, 0.0}, 3.0},
		{{1, 29, 1}, {0.0, 1.6, 0.0}, 0.0},
		/* large planes: rings of planes beyond the caches */
		{{131, 127, 9}, {1.0, 1.5, 0.7}, 0.0}, {{257, 256, 5}, {0.9, 0.7, 1.3}, 0.0},
		{{260, 256, 8}, {0.0, 1.2, 2.0}, 2.0}, {{256, 257, 6}, {1.1, 0.0, 0.8}, 0.0},
	};
	ffdp_error err = {0};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
		for (int renorm = 0; renorm <= 1; renorm++)
			for (int th = 1; th <= 4; th *= 2) {
				omp_set_num_threads(th);
				ffdp_smooth_opts o = {{cases[c].sigma[0], cases[c].sigma[1], cases[c].sigma[2]},
						      cases[c].truncate, renorm};
				ffdp_status st;
				double e = run_case(be, rng, cases[c].n[0], cases[c].n[1], cases[c].n[2], &o, &st,
						    &err);
				CHECK(st == FFDP_OK && e < 1e-5,
				      "smooth %lldx%lldx%lld sigma (%.1f %.1f %.1f) truncate %.1f renorm %d, %d thr: "
				      "rel err %.2e",
				      (long long)cases[c].n[0], (long long)cases[c].n[1], (long long)cases[c].n[2],
				      o.sigma[0], o.sigma[1], o.sigma[2], o.truncate, renorm, th, e);
			}
	omp_set_num_threads(2);
}

static void test_vector_field(ffdp_backend *be, tu_rng *rng)
{
	ffdp_error err = {0};
	int64_t n[3] = {19, 13, 15}, nv = n[0] * n[1] * n[2];
	ffdp_smooth_opts o = {{1.1, 0.7, 1.9}, 0.0, 0};
	float *c[3];
	double *ref[3];
	for (int k = 0; k < 3; k++) {
		c[k] = malloc((size_t)nv * sizeof(float));
		ref[k] = malloc((size_t)nv * sizeof(double));
		tu_fill_uniform(rng, c[k], nv, -3.0, 3.0);
		ref_smooth(c[k], n, &o, ref[k]);
	}
	ffdp_vec v = {{c[0], c[1], c[2]}, {n[0], n[1], n[2]}, 3};
	CHECK_OK(ffdp_op_smooth_vec(be, v, &o, &err), &err, "smooth_vec on a 19x13x15 field");
	double e = 0;
	for (int k = 0; k < 3; k++)
		e = fmax(e, tu_rel_err(c[k], ref[k], nv, 1e-30)), free(c[k]), free(ref[k]);
	CHECK(e < 1e-5, "smooth_vec, zero padding: all 3 components match the reference (rel err %.2e)", e);
}

/* renormalize = 1 keeps a constant; renormalize = 0 keeps the mass of a
 * bump whose kernel footprint lies inside the box; both are linear. */
static void test_invariants(ffdp_backend *be, tu_rng *rng)
{
	ffdp_error err = {0};
	int64_t n[3] = {21, 18, 13}, nv = n[0] * n[1] * n[2];
	float *x = malloc((size_t)nv * sizeof(float));
	for (int64_t i = 0; i < nv; i++)
		x[i] = 3.25f;
	ffdp_smooth_opts o = {{2.5, 1.5, 3.5}, 2.0, 1};
	ffdp_img img = {x, {n[0], n[1], n[2]}};
	CHECK_OK(ffdp_op_smooth(be, img, &o, &err), &err, "smooth a constant image");
	double d = 0;
	for (int64_t i = 0; i < nv; i++)
		d = fmax(d, fabs(x[i] - 3.25));
	CHECK(d < 3.25 * 1e-6, "renormalize = 1: a constant stays constant, faces included (max dev %.2e)", d);

	/* random values in a central box, far (> radius) from every face */
	memset(x, 0, (size_t)nv * sizeof(float));
	double before = 0, after = 0;
	for (int64_t z = 5; z < 8; z++)
		for (int64_t y = 7; y < 11; y++)
			for (int64_t xx = 8; xx < 13; xx++) {
				float v = (float)tu_uniform(rng);
				x[(z * n[1] + y) * n[0] + xx] = v;
				before += v;
			}
	ffdp_smooth_opts o2 = {{1.5, 1.2, 1.0}, 2.0, 0};
	CHECK_OK(ffdp_op_smooth(be, img, &o2, &err), &err, "smooth an interior bump");
	for (int64_t i = 0; i < nv; i++)
		after += x[i];
	CHECK(fabs(after - before) < 1e-5 * before, "interior mass is conserved: %.7f -> %.7f", before, after);

	/* 2-D: a z sigma is ignored (an axis of size 1 has no neighbours) */
	int64_t m[3] = {23, 17, 1}, mv = m[0] * m[1];
	float *a = malloc((size_t)mv * sizeof(float)), *b = malloc((size_t)mv * sizeof(float));
	tu_fill_uniform(rng, a, mv, 0.0, 1.0);
	memcpy(b, a, (size_t)mv * sizeof(float));
	ffdp_smooth_opts oa = {{1.2, 0.9, 2.0}, 0, 0}, ob = {{1.2, 0.9, 0.0}, 0, 0};
	ffdp_img ia = {a, {m[0], m[1], 1}}, ib = {b, {m[0], m[1], 1}};
	ffdp_status s1 = ffdp_op_smooth(be, ia, &oa, &err), s2 = ffdp_op_smooth(be, ib, &ob, &err);
	CHECK(s1 == FFDP_OK && s2 == FFDP_OK && memcmp(a, b, (size_t)mv * sizeof(float)) == 0,
	      "2-D: sigma_z > 0 gives the same result as sigma_z = 0");
	free(a);
	free(b);

	/* all sigma 0 is the identity and allocates nothing */
	tu_fill_uniform(rng, x, nv, 0.0, 1.0);
	float *copy = malloc((size_t)nv * sizeof(float));
	memcpy(copy, x, (size_t)nv * sizeof(float));
	ffdp_smooth_opts oz = {{0, 0, 0}, 0, 1};
	alloc_count_reset();
	CHECK_OK(ffdp_op_smooth(be, img, &oz, &err), &err, "smooth with sigma 0 0 0");
	CHECK(memcmp(copy, x, (size_t)nv * sizeof(float)) == 0 && alloc_count_calls() == 0,
	      "sigma 0 0 0 leaves the image untouched, no allocation");
	free(copy);

	ffdp_smooth_opts bad = {{1.0, -0.5, 1.0}, 0, 1};
	CHECK(ffdp_op_smooth(be, img, &bad, &err) == FFDP_ERR_ARG, "negative sigma refused: %s", err.msg);
	ffdp_smooth_opts huge = {{1e12, 1.0, 1.0}, 0, 1};
	CHECK(ffdp_op_smooth(be, img, &huge, &err) == FFDP_ERR_ARG, "absurd radius refused: %s", err.msg);
	free(x);
}

/* Every voxel's float operations are fixed: 1..4 threads (slab ends move)
 * and the scalar kernels give the bits of the 2-thread AVX2 run. */
static void test_bits(ffdp_backend *be, tu_rng *rng)
{
	static const struct {
		int64_t n[3];
		double sigma[3];
		int renorm;
	} cases[] = {
		{{37, 29, 23}, {1.5, 1.0, 1.2}, 0}, {{37, 29, 23}, {0.0, 2.0, 0.6}, 1},
		{{41, 33, 1}, {1.3, 1.7, 0.0}, 1},  {{19, 45, 6}, {0.8, 1.4, 0.0}, 0},
		{{23, 21, 25}, {2.6, 0.9, 3.1}, 1}, /* radii 6 and 7: the wide kernels */
	};
	ffdp_error err = {0};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const int64_t nv = cases[c].n[0] * cases[c].n[1] * cases[c].n[2];
		float *x0 = malloc((size_t)nv * sizeof(float)), *ref = malloc((size_t)nv * sizeof(float));
		float *x = malloc((size_t)nv * sizeof(float));
		tu_fill_uniform(rng, x0, nv, -1.0, 2.0);
		ffdp_smooth_opts o = {{cases[c].sigma[0], cases[c].sigma[1], cases[c].sigma[2]}, 0.0, cases[c].renorm};
		ffdp_img img = {ref, {cases[c].n[0], cases[c].n[1], cases[c].n[2]}};
		memcpy(ref, x0, (size_t)nv * sizeof(float));
		omp_set_num_threads(2);
		ffdp_status st = ffdp_op_smooth(be, img, &o, &err);
		int same = 1;
		for (int run = 0; run < 5; run++) {
			omp_set_num_threads(run < 4 ? run + 1 : 3);
			ffdp_cpu_force_scalar = run == 4;
			memcpy(x, x0, (size_t)nv * sizeof(float));
			img.p = x;
			st |= ffdp_op_smooth(be, img, &o, &err);
			same &= memcmp(x, ref, (size_t)nv * sizeof(float)) == 0;
			img.p = ref;
		}
		ffdp_cpu_force_scalar = 0;
		omp_set_num_threads(2);
		CHECK(st == FFDP_OK && same,
		      "smooth %lldx%lldx%lld: 1, 2, 3, 4 threads and the scalar kernels give the same bits",
		      (long long)cases[c].n[0], (long long)cases[c].n[1], (long long)cases[c].n[2]);
		free(x0), free(ref), free(x);
	}
}

/* Out of place (smooth_to): the in-place bits, x left as it was; a vector
 * field through smooth_vec_to; out overlapping x refused. */
static void test_out_of_place(ffdp_backend *be, tu_rng *rng)
{
	ffdp_error err = {0};
	const int64_t n[3] = {29, 23, 17}, nv = n[0] * n[1] * n[2];
	float *x = malloc((size_t)nv * sizeof(float)), *keep = malloc((size_t)nv * sizeof(float));
	float *in = malloc((size_t)nv * sizeof(float)), *out = malloc((size_t)nv * sizeof(float));
	tu_fill_uniform(rng, x, nv, -1.0, 2.0);
	memcpy(keep, x, (size_t)nv * sizeof(float));
	memcpy(in, x, (size_t)nv * sizeof(float));
	ffdp_smooth_opts o = {{0.5, 1.5, 1.0}, 2.0, 0};
	ffdp_img xi = {x, {n[0], n[1], n[2]}}, ii = {in, {n[0], n[1], n[2]}}, oi = {out, {n[0], n[1], n[2]}};
	ffdp_status s = ffdp_op_smooth_to(be, xi, oi, &o, &err);
	s = s ? s : ffdp_op_smooth(be, ii, &o, &err);
	CHECK(s == FFDP_OK && !memcmp(out, in, (size_t)nv * sizeof(float)) && !memcmp(x, keep, (size_t)nv * sizeof(float)),
	      "smooth_to 29x23x17: the in-place bits, x kept (%s)", s ? err.msg : "ok");
	ffdp_img half = {x + nv / 2, {n[0], n[1], n[2]}};
	CHECK(ffdp_op_smooth_to(be, xi, half, &o, &err) == FFDP_ERR_ARG, "  overlapping out refused (%s)", err.msg);
	tfield u = tu_field_new(n[0], n[1], n[2]), w = tu_field_new(n[0], n[1], n[2]), v = tu_field_new(n[0], n[1], n[2]);
	for (int c = 0; c < u.nc; c++) {
		tu_fill_uniform(rng, u.c[c], nv, -1.0, 1.0);
		memcpy(v.c[c], u.c[c], (size_t)nv * sizeof(float));
	}
	s = ffdp_op_smooth_vec_to(be, tu_field_vec(&u), tu_field_vec(&w), &o, &err);
	s = s ? s : ffdp_op_smooth_vec(be, tu_field_vec(&v), &o, &err);
	int same = s == FFDP_OK;
	for (int c = 0; c < u.nc; c++)
		same &= !memcmp(w.c[c], v.c[c], (size_t)nv * sizeof(float));
	CHECK(same, "  smooth_vec_to: every component's in-place bits");
	tu_field_free(&u), tu_field_free(&w), tu_field_free(&v);
	free(x), free(keep), free(in), free(out);
}

/* Scratch is a few lines per thread plus a ring of 2 rz + 1 planes, never
 * a volume. */
static void test_scratch(ffdp_backend *be, tu_rng *rng)
{
	ffdp_error err = {0};
	int64_t n[3] = {260, 256, 96}, nv = n[0] * n[1] * n[2];
	omp_set_num_threads(1); /* one slab: no halo planes */
	float *x = malloc((size_t)nv * sizeof(float));
	tu_fill_uniform(rng, x, nv, 0.0, 1.0);
	ffdp_smooth_opts o = {{2.0, 2.0, 2.0}, 2.0, 1};
	ffdp_img img = {x, {n[0], n[1], n[2]}};
	alloc_count_reset();
	CHECK_OK(ffdp_op_smooth(be, img, &o, &err), &err, "smooth a 260x256x96 volume, sigma 2");
	omp_set_num_threads(2);
	size_t extra = alloc_count_peak_extra(), vol = (size_t)nv * sizeof(float);
	size_t ring = 9 * (size_t)(n[0] * n[1]) * sizeof(float); /* radius 4: 2*4 + 1 planes */
	CHECK(extra <= ring + 65536 && extra < vol / 8,
	      "smooth scratch %zu B: a ring of 9 planes (%zu B) + lines, under 1/8 of the volume (%zu B)", extra,
	      ring, vol);
	free(x);
}

int main(void)
{
	ffdp_error err = {0};
	ffdp_backend *be = NULL;
	tu_rng rng = tu_rng_make(31);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "open the CPU backend");
	if (!be)
		return check_done();
	test_against_reference(be, &rng);
	test_vector_field(be, &rng);
	test_invariants(be, &rng);
	test_scratch(be, &rng);
	test_bits(be, &rng);
	test_out_of_place(be, &rng);
	ffdp_backend_close(be);
	return check_done();
}

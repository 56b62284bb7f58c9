/* ffdp_op_sample_zrange (the z extent of the sampler's points, which a
 * shard fetches) against a plain double reference that forms each point as
 * the sampler does: random W, B and u, odd box sizes, a shard offset, a
 * NaN point, an empty box, 1 and 3 threads; and ffdp_buf_zero. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static void reference(const ffdp_sample_args *a, double *lo, double *hi, int *nan)
{
	const int64_t *n = a->out.n;
	*lo = INFINITY, *hi = -INFINITY, *nan = 0;
	for (int64_t z = 0; z < n[2]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t x = 0; x < n[0]; x++) {
				const int64_t j = (z * n[1] + y) * n[0] + x;
				const double *W = a->W, *B = a->B;
				double p = W[9] * (double)(a->lo[1] + y) + W[10] * (double)(a->lo[2] + z) + W[11];
				p = p + W[8] * (double)(a->lo[0] + x);
				if (a->u)
					p += B[6] * a->u->c[0][j] + B[7] * a->u->c[1][j] + B[8] * a->u->c[2][j];
				if (p != p) {
					*nan = 1;
					continue;
				}
				*lo = fmin(*lo, p), *hi = fmax(*hi, p);
			}
}

static void one_case(ffdp_backend *be, tu_rng *r, const int64_t n[3], const int64_t lo[3], int with_u, int with_nan)
{
	ffdp_error err = {0};
	const int64_t nv = n[0] * n[1] * n[2];
	float *out = calloc((size_t)nv + 1, sizeof(float)), *uc[3];
	for (int c = 0; c < 3; c++) {
		uc[c] = malloc((size_t)nv * sizeof(float) + 4);
		tu_fill_uniform(r, uc[c], nv, -4.0, 4.0);
	}
	if (with_nan)
		uc[2][nv / 2] = NAN;
	ffdp_vec u = {{uc[0], uc[1], uc[2]}, {n[0], n[1], n[2]}, 3};
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	for (int k = 0; k < 12; k++)
		a.W[k] = 2.0 * tu_uniform(r) - 1.0;
	for (int k = 0; k < 9; k++)
		a.B[k] = 2.0 * tu_uniform(r) - 1.0;
	a.W[11] = 40.0 * tu_uniform(r);
	memcpy(a.lo, lo, sizeof(a.lo));
	a.out = (ffdp_img){out, {n[0], n[1], n[2]}};
	a.u = with_u ? &u : NULL;
	double rl, rh, l, h;
	int rn, nn;
	reference(&a, &rl, &rh, &rn);
	for (int th = 1; th <= 3; th += 2) {
		omp_set_num_threads(th);
		ffdp_status s = ffdp_op_sample_zrange(be, &a, &l, &h, &nn, &err);
		CHECK(!s && l == rl && h == rh && nn == rn,
		      "zrange %lldx%lldx%lld at (%lld,%lld,%lld)%s%s, %d thread%s: [%.17g, %.17g] nan %d, reference "
		      "[%.17g, %.17g] nan %d",
		      (long long)n[0], (long long)n[1], (long long)n[2], (long long)lo[0], (long long)lo[1],
		      (long long)lo[2], with_u ? " +u" : "", with_nan ? " with a NaN" : "", th, th > 1 ? "s" : "", l, h, nn,
		      rl, rh, rn);
	}
	free(out);
	for (int c = 0; c < 3; c++)
		free(uc[c]);
}

int main(void)
{
	ffdp_error err = {0};
	ffdp_backend *be = NULL;
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "cpu backend");
	if (!be)
		return check_done();
	tu_rng r = tu_rng_make(20261124);
	const int64_t sizes[3][3] = {{17, 23, 11}, {5, 7, 1}, {31, 3, 9}};
	const int64_t los[2][3] = {{0, 0, 0}, {3, 5, 40}};
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 2; k++) {
			one_case(be, &r, sizes[i], los[k], 1, 0);
			one_case(be, &r, sizes[i], los[k], 0, 0);
		}
	one_case(be, &r, sizes[0], los[1], 1, 1);
	/* an empty box: nothing read, the empty range */
	ffdp_sample_args e;
	memset(&e, 0, sizeof(e));
	double l = 0, h = 0;
	int nn = 1;
	CHECK(!ffdp_op_sample_zrange(be, &e, &l, &h, &nn, &err) && l == INFINITY && h == -INFINITY && nn == 0,
	      "an empty box gives the empty range [+inf, -inf]");
	/* buffer zero */
	float *b = ffdp_buf_alloc(be, 64 * sizeof(float), &err);
	for (int i = 0; i < 64 && b; i++)
		b[i] = (float)i + 1.0f;
	int z = b && !ffdp_buf_zero(be, b + 8, 16 * sizeof(float), &err);
	for (int i = 0; i < 64 && z; i++)
		z = (i >= 8 && i < 24) ? b[i] == 0.0f : b[i] == (float)i + 1.0f;
	CHECK(z, "ffdp_buf_zero clears exactly its bytes");
	ffdp_buf_free(be, b);
	ffdp_backend_close(be);
	return check_done();
}

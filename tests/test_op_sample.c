/* The fused sampler against a plain double-precision reference written here:
 * forward (linear, nearest, label x zero, border pad, with and without u,
 * 3-D and 2-D, oblique anisotropic geometry, odd sizes), accumulation,
 * shards (bit for bit), exact integer shifts, label ties, and the gradients
 * gu, gW, gM against central finite differences of the reference loss
 * L = sum_j gout(j) out(j); the AVX2 paths against the scalar ones, bit for
 * bit.  Ends with a timing at 192^3 (printed only). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static ffdp_backend *be;
static ffdp_error err;

static const char *pad_name[] = {"zero", "border"};
static const char *interp_name[] = {"linear", "nearest", "label"};

static int64_t nvox(const int64_t n[3])
{
	return n[0] * n[1] * n[2];
}

static float *falloc(int64_t n)
{
	return calloc((size_t)n, sizeof(float));
}

/* ---- problem: geometry, moving image, field ----------------------------- */

typedef struct prob {
	int d3, nc; /* nc: components of u, 0 without a field */
	int64_t on[3], mn[3];
	double W[12], B[9];
	float *M, *u[3];
	double *Md;
} prob;

static void inplane_rotation(tu_rng *r, double R[9])
{
	double a = 6.283185307179586 * tu_uniform(r), c = cos(a), s = sin(a);
	double m[9] = {c, -s, 0, s, c, 0, 0, 0, 1};
	memcpy(R, m, sizeof(m));
}

/* W = (moving phys->index) T (fixed index->phys), random oblique anisotropic
 * grids, T a random affine taking the fixed centre near the moving centre
 * (so some points fall outside).  2-D: in-plane geometry, then junk in the
 * z row and column of W and B, which the op must ignore. */
static void make_geometry(tu_rng *r, int d3, const int64_t on[3], const int64_t mn[3], double W[12],
			  double B[9])
{
	ffdp_grid gf = tu_random_grid(r, on[0], on[1], on[2]);
	ffdp_grid gm = tu_random_grid(r, mn[0], mn[1], mn[2]);
	double R[9], S[9], L[9] = {0}, cf[3], cm[3], t[3];
	if (d3) {
		tu_random_rotation(r, R);
	} else {
		inplane_rotation(r, gf.dir);
		inplane_rotation(r, gm.dir);
		inplane_rotation(r, R);
	}
	for (int i = 0; i < 9; i++)
		S[i] = (i % 4 == 0) + 0.3 * (tu_uniform(r) - 0.5);
	if (!d3)
		S[2] = S[5] = S[6] = S[7] = 0, S[8] = 1;
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++)
			for (int m = 0; m < 3; m++)
				L[3 * i + k] += R[3 * i + m] * S[3 * m + k];
	ffdp_grid_center(&gf, cf);
	ffdp_grid_center(&gm, cm);
	for (int k = 0; k < 3; k++)
		t[k] = cm[k] - (L[3 * k] * cf[0] + L[3 * k + 1] * cf[1] + L[3 * k + 2] * cf[2]) +
		       4.0 * (tu_uniform(r) - 0.5);
	ffdp_mat4 T = ffdp_mat4_from_linear(L, t), P = ffdp_grid_phys_to_index(&gm);
	ffdp_mat4 Wm = ffdp_mat4_mul(P, ffdp_mat4_mul(T, ffdp_grid_index_to_phys(&gf)));
	for (int k = 0; k < 12; k++)
		W[k] = Wm.m[k];
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++)
			B[3 * i + k] = P.m[4 * i + k];
	if (!d3) {
		int wj[] = {2, 6, 8, 9, 10, 11}, bj[] = {2, 5, 6, 7, 8};
		for (int k = 0; k < 6; k++)
			W[wj[k]] = 10.0 * (tu_uniform(r) - 0.5);
		for (int k = 0; k < 5; k++)
			B[bj[k]] = 10.0 * (tu_uniform(r) - 0.5);
	}
}

static const float label_set[] = {0, 1, 2, 3, 5, 8, 13};

static prob prob_make(tu_rng *r, int d3, int with_u, int labels)
{
	prob P;
	memset(&P, 0, sizeof(P));
	int64_t on[3] = {17, 23, d3 ? 11 : 1}, mn[3] = {13, 19, d3 ? 15 : 1};
	P.d3 = d3;
	memcpy(P.on, on, sizeof(on));
	memcpy(P.mn, mn, sizeof(mn));
	make_geometry(r, d3, on, mn, P.W, P.B);
	int64_t nm = nvox(mn), no = nvox(on);
	P.M = falloc(nm);
	P.Md = malloc((size_t)nm * sizeof(double));
	if (labels)
		for (int64_t i = 0; i < nm; i++)
			P.M[i] = label_set[tu_next(r) % 7];
	else
		tu_fill_smooth(r, P.M, mn, 0.02);
	for (int64_t i = 0; i < nm; i++)
		P.Md[i] = P.M[i];
	P.nc = with_u ? (d3 ? 3 : 2) : 0;
	for (int c = 0; c < P.nc; c++) { /* smooth, rescaled to [-2, 2] mm */
		float *x = P.u[c] = falloc(no), lo = 1e30f, hi = -1e30f;
		tu_fill_smooth(r, x, on, 0.0);
		for (int64_t j = 0; j < no; j++)
			lo = fminf(lo, x[j]), hi = fmaxf(hi, x[j]);
		for (int64_t j = 0; j < no; j++)
			x[j] = 4.0f * (x[j] - lo) / (hi - lo) - 2.0f;
	}
	return P;
}

static void prob_free(prob *P)
{
	free(P->M);
	free(P->Md);
	for (int c = 0; c < 3; c++)
		free(P->u[c]);
}

static ffdp_vec prob_u(const prob *P)
{
	ffdp_vec u = {{P->u[0], P->u[1], P->u[2]}, {P->on[0], P->on[1], P->on[2]}, P->nc};
	return u;
}

static ffdp_sample_args prob_args(const prob *P, const ffdp_vec *u, float *out, ffdp_interp interp,
				  ffdp_pad pad)
{
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	a.moving.p = P->M;
	memcpy(a.moving.n, P->mn, sizeof(P->mn));
	memcpy(a.W, P->W, sizeof(a.W));
	memcpy(a.B, P->B, sizeof(a.B));
	a.u = P->nc ? u : NULL;
	a.out.p = out;
	memcpy(a.out.n, P->on, sizeof(P->on));
	a.interp = interp;
	a.pad = pad;
	return a;
}

/* ---- the reference ------------------------------------------------------------ */

/* p = W [i;1] + B (u(j) + du) in double. */
static void ref_p(const prob *P, const double W[12], int64_t j, const double du[3], double p[3])
{
	double i[4] = {(double)(j % P->on[0]), (double)((j / P->on[0]) % P->on[1]),
		       (double)(j / (P->on[0] * P->on[1])), 1.0};
	double u[3] = {0, 0, 0};
	for (int c = 0; c < P->nc; c++)
		u[c] = (double)P->u[c][j] + du[c];
	for (int k = 0; k < 3; k++) {
		p[k] = 0;
		for (int c = 0; c < 4; c++)
			p[k] += W[4 * k + c] * i[c];
		for (int c = 0; c < 3; c++)
			p[k] += P->B[3 * k + c] * u[c];
	}
}

/* The corners of p: index and weight, -1 index when outside (zero pad). */
static int ref_corners(const int64_t n[3], int d3, const double p[3], ffdp_pad pad, int64_t idx[8],
		       double w[8])
{
	int na = d3 ? 3 : 2;
	double q[3], f[3];
	int64_t b[3];
	for (int a = 0; a < na; a++) {
		q[a] = p[a];
		if (pad == FFDP_PAD_BORDER)
			q[a] = fmin(fmax(q[a], 0.0), (double)(n[a] - 1));
		b[a] = (int64_t)floor(q[a]);
		f[a] = q[a] - (double)b[a];
	}
	int nk = 1 << na;
	for (int k = 0; k < nk; k++) {
		int64_t c[3] = {0, 0, 0};
		int inside = 1;
		w[k] = 1.0;
		for (int a = 0; a < na; a++) {
			int bit = (k >> a) & 1;
			c[a] = b[a] + bit;
			w[k] *= bit ? f[a] : 1.0 - f[a];
			if (c[a] < 0 || c[a] >= n[a]) {
				if (pad == FFDP_PAD_BORDER)
					c[a] = c[a] < 0 ? 0 : n[a] - 1;
				else
					inside = 0;
			}
		}
		idx[k] = inside ? (c[2] * n[1] + c[1]) * n[0] + c[0] : -1;
	}
	return nk;
}

static double ref_linear(const double *M, const int64_t n[3], int d3, const double p[3], ffdp_pad pad)
{
	int64_t idx[8];
	double w[8], v = 0;
	int nk = ref_corners(n, d3, p, pad, idx, w);
	for (int k = 0; k < nk; k++)
		if (idx[k] >= 0)
			v += w[k] * M[idx[k]];
	return v;
}

static double ref_nearest(const double *M, const int64_t n[3], int d3, const double p[3], ffdp_pad pad)
{
	int64_t c[3] = {0, 0, 0};
	for (int a = 0; a < (d3 ? 3 : 2); a++) {
		double q = p[a];
		if (pad == FFDP_PAD_BORDER)
			q = fmin(fmax(q, 0.0), (double)(n[a] - 1));
		c[a] = (int64_t)floor(q + 0.5);
		if (c[a] < 0 || c[a] >= n[a])
			return 0.0;
	}
	return M[(c[2] * n[1] + c[1]) * n[0] + c[0]];
}

/* Label of largest summed weight (ties: smallest); *gap = best - runner-up. */
static double ref_label(const double *M, const int64_t n[3], int d3, const double p[3], ffdp_pad pad,
			double *gap)
{
	int64_t idx[8];
	double w[8], lab[8], sum[8];
	int nk = ref_corners(n, d3, p, pad, idx, w), nl = 0;
	for (int k = 0; k < nk; k++) {
		if (idx[k] < 0 || w[k] <= 0)
			continue;
		int l = 0;
		while (l < nl && lab[l] != M[idx[k]])
			l++;
		if (l == nl)
			lab[nl] = M[idx[k]], sum[nl++] = 0;
		sum[l] += w[k];
	}
	double best = 0, bw = -1, second = 0;
	for (int l = 0; l < nl; l++)
		if (sum[l] > bw || (sum[l] == bw && lab[l] < best))
			best = lab[l], bw = sum[l];
	for (int l = 0; l < nl; l++)
		if (lab[l] != best && sum[l] > second)
			second = sum[l];
	if (gap)
		*gap = nl ? bw - second : 1.0;
	return best;
}

static double ref_value(const prob *P, const double *M, const double p[3], ffdp_interp in, ffdp_pad pad,
			double *gap)
{
	if (gap)
		*gap = 1.0;
	if (in == FFDP_INTERP_NEAREST)
		return ref_nearest(M, P->mn, P->d3, p, pad);
	if (in == FFDP_INTERP_LABEL)
		return ref_label(M, P->mn, P->d3, p, pad, gap);
	return ref_linear(M, P->mn, P->d3, p, pad);
}

/* Distance of p to the nearest integer or half-integer (the kinks of linear
 * and the jumps of nearest). */
static double knot_dist(const double p[3], int d3)
{
	double d = 1.0;
	for (int a = 0; a < (d3 ? 3 : 2); a++)
		d = fmin(d, fabs(2.0 * p[a] - floor(2.0 * p[a] + 0.5)) / 2.0);
	return d;
}

/* Nudge u(j) until p(j) is at least margin from any knot and, for labels,
 * the winning label leads by at least 1e-4: no test depends on a tie or
 * a kink that float rounding could resolve either way. */
static int nudge(prob *P, double margin, ffdp_interp in, ffdp_pad pad)
{
	int64_t no = nvox(P->on);
	int moved = 0;
	double zero[3] = {0, 0, 0}, p[3], gap;
	for (int64_t j = 0; j < no; j++)
		for (int it = 0; it < 300; it++) {
			ref_p(P, P->W, j, zero, p);
			ref_value(P, P->Md, p, in, pad, &gap);
			if (knot_dist(p, P->d3) > margin && gap > 1e-4)
				break;
			P->u[it % P->nc][j] += 0.0137f;
			moved += it == 0;
		}
	return moved;
}

/* Without u: shift W's translation until every point is margin from knots. */
static int place_away(prob *P, tu_rng *r, double margin)
{
	int64_t no = nvox(P->on);
	double zero[3] = {0, 0, 0}, p[3];
	for (int tries = 1; tries < 1000; tries++) {
		double d = 1.0;
		for (int64_t j = 0; j < no; j++) {
			ref_p(P, P->W, j, zero, p);
			d = fmin(d, knot_dist(p, P->d3));
		}
		if (d > margin)
			return tries;
		for (int k = 0; k < 3; k++)
			P->W[4 * k + 3] += tu_uniform(r) - 0.5;
	}
	return -1;
}

/* ---- forward ---------------------------------------------------------------------- */

static void test_forward(tu_rng *r, int d3, int with_u, ffdp_pad pad, ffdp_interp in)
{
	prob P = prob_make(r, d3, with_u, in == FFDP_INTERP_LABEL);
	int moved = with_u ? nudge(&P, 1e-6, in, pad) : 0;
	int64_t no = nvox(P.on), inside = 0, mism = 0, ties = 0;
	float *out = falloc(no);
	double *ref = malloc((size_t)no * sizeof(double)), zero[3] = {0, 0, 0}, p[3], gap;
	ffdp_vec u = prob_u(&P);
	ffdp_sample_args a = prob_args(&P, &u, out, in, pad);
	CHECK_OK(ffdp_op_sample(be, &a, &err), &err, "sample %dD %s %s %s u", d3 ? 3 : 2, interp_name[in],
		 pad_name[pad], with_u ? "with" : "without");
	for (int64_t j = 0; j < no; j++) {
		ref_p(&P, P.W, j, zero, p);
		ref[j] = ref_value(&P, P.Md, p, in, pad, &gap);
		int ins = 1;
		for (int k = 0; k < (d3 ? 3 : 2); k++)
			ins &= p[k] >= 0 && p[k] <= (double)(P.mn[k] - 1);
		inside += ins;
		mism += out[j] != (float)ref[j];
		ties += gap < 1e-5;
	}
	double frac = (double)inside / (double)no;
	if (in == FFDP_INTERP_LABEL) {
		CHECK(mism == 0, "  label %dD %s %s u: %lld of %lld voxels differ from the reference "
		      "(%lld near-ties < 1e-5, %d nudged), %.0f%% of points inside",
		      d3 ? 3 : 2, pad_name[pad], with_u ? "with" : "without", (long long)mism, (long long)no,
		      (long long)ties, moved, 100 * frac);
	} else {
		double e = tu_rel_err(out, ref, no, 1e-3);
		CHECK(e < 1e-5, "  %s %dD %s %s u: max rel err %.2e vs double reference (%.0f%% inside)",
		      interp_name[in], d3 ? 3 : 2, pad_name[pad], with_u ? "with" : "without", e, 100 * frac);
	}
	CHECK(frac > 0.05 && frac < 0.99, "  sample points fall both inside and outside the moving image");
	free(out);
	free(ref);
	prob_free(&P);
}

static void test_accumulate(tu_rng *r, int d3, ffdp_interp in)
{
	prob P = prob_make(r, d3, 1, 0);
	int64_t no = nvox(P.on);
	float *out = falloc(no);
	double *ref = malloc((size_t)no * sizeof(double)), zero[3] = {0, 0, 0}, p[3];
	tu_fill_uniform(r, out, no, -3.0, 3.0);
	for (int64_t j = 0; j < no; j++) {
		ref_p(&P, P.W, j, zero, p);
		ref[j] = out[j] + ref_value(&P, P.Md, p, in, FFDP_PAD_ZERO, NULL);
	}
	ffdp_vec u = prob_u(&P);
	ffdp_sample_args a = prob_args(&P, &u, out, in, FFDP_PAD_ZERO);
	a.accumulate = 1;
	CHECK_OK(ffdp_op_sample(be, &a, &err), &err, "sample accumulate %dD %s", d3 ? 3 : 2, interp_name[in]);
	double e = tu_rel_err(out, ref, no, 1e-3);
	CHECK(e < 1e-5, "  accumulate: out = preset + sample, max rel err %.2e", e);
	free(out);
	free(ref);
	prob_free(&P);
}

/* Boxes of the output with the same W reproduce the full output bit for bit. */
static void test_shards(tu_rng *r)
{
	prob P = prob_make(r, 1, 1, 0);
	int64_t no = nvox(P.on);
	float *full = falloc(no);
	ffdp_vec u = prob_u(&P);
	int64_t boxes[4][6] = {
		{0, 0, 0, 17, 23, 4}, {0, 0, 4, 17, 23, 4}, {0, 0, 8, 17, 23, 3}, {3, 5, 2, 9, 11, 6}};
	for (int in = 0; in < 3; in++)
		for (int pad = 0; pad < 2; pad++) {
			ffdp_sample_args a = prob_args(&P, &u, full, (ffdp_interp)in, (ffdp_pad)pad);
			ffdp_status s = ffdp_op_sample(be, &a, &err);
			int64_t diff = 0, tot = 0;
			for (int b = 0; b < 4 && s == FFDP_OK; b++) {
				const int64_t *lo = boxes[b], *n = boxes[b] + 3;
				int64_t nb = nvox(n);
				float *ub[3] = {falloc(nb), falloc(nb), falloc(nb)}, *ob = falloc(nb);
				for (int64_t j = 0; j < nb; j++) {
					int64_t x = j % n[0], y = (j / n[0]) % n[1], z = j / (n[0] * n[1]);
					int64_t g = ((lo[2] + z) * P.on[1] + lo[1] + y) * P.on[0] + lo[0] + x;
					for (int c = 0; c < 3; c++)
						ub[c][j] = P.u[c][g];
				}
				ffdp_vec uv = {{ub[0], ub[1], ub[2]}, {n[0], n[1], n[2]}, 3};
				ffdp_sample_args sa = a;
				sa.u = &uv;
				memcpy(sa.lo, lo, 3 * sizeof(int64_t));
				sa.out.p = ob;
				memcpy(sa.out.n, n, 3 * sizeof(int64_t));
				s = ffdp_op_sample(be, &sa, &err);
				for (int64_t j = 0; j < nb; j++) {
					int64_t x = j % n[0], y = (j / n[0]) % n[1], z = j / (n[0] * n[1]);
					int64_t g = ((lo[2] + z) * P.on[1] + lo[1] + y) * P.on[0] + lo[0] + x;
					diff += memcmp(&ob[j], &full[g], sizeof(float)) != 0;
				}
				tot += nb;
				free(ub[0]), free(ub[1]), free(ub[2]), free(ob);
			}
			CHECK(s == FFDP_OK && diff == 0,
			      "shards %s %s: 3 z-slabs and an x/y/z-offset box give the full output bit for bit "
			      "(%lld of %lld voxels differ)", interp_name[in], pad_name[pad], (long long)diff,
			      (long long)tot);
		}
	free(full);
	prob_free(&P);
}

/* A moving sub-box holding the corners of a slab's points gives the whole
 * moving volume's bits, forward (every interpolation and pad) and the
 * backward to u.  The box is the points' clamped [floor(min p),
 * floor(max p) + 1] per axis, taken from the double reference. */
static void test_moving_box(tu_rng *r)
{
	prob P = prob_make(r, 1, 1, 0);
	int64_t no = nvox(P.on), slabs[7] = {0, 2, 4, 6, 8, 10, 11};
	float *full = falloc(no), *gfull[3] = {falloc(no), falloc(no), falloc(no)}, *gout = falloc(no);
	ffdp_vec u = prob_u(&P), gfv = {{gfull[0], gfull[1], gfull[2]}, {P.on[0], P.on[1], P.on[2]}, 3};
	for (int64_t j = 0; j < no; j++)
		gout[j] = (float)(tu_uniform(r) - 0.5);
	for (int in = 0; in < 3; in++)
		for (int pad = 0; pad < 2; pad++) {
			ffdp_sample_args a = prob_args(&P, &u, full, (ffdp_interp)in, (ffdp_pad)pad);
			ffdp_status s = ffdp_op_sample(be, &a, &err);
			ffdp_sample_grad_args ga = {&a, {gout, {P.on[0], P.on[1], P.on[2]}}, &gfv, 0, NULL, NULL, NULL, NULL};
			if (!s && in == FFDP_INTERP_LINEAR)
				s = ffdp_op_sample_grad(be, &ga, &err);
			int64_t diff = 0, gdiff = 0, smaller = 0;
			for (int b = 0; b < 6 && !s; b++) {
				int64_t z0 = slabs[b], z1 = slabs[b + 1], plane = P.on[0] * P.on[1];
				int64_t nb = (z1 - z0) * plane, j0 = z0 * plane, mlo[3], mhi[3], bn[3];
				double pmin[3] = {1e300, 1e300, 1e300}, pmax[3] = {-1e300, -1e300, -1e300}, zero[3] = {0};
				for (int64_t j = j0; j < j0 + nb; j++) {
					double p[3];
					ref_p(&P, P.W, j, zero, p);
					for (int k = 0; k < 3; k++)
						pmin[k] = fmin(pmin[k], p[k]), pmax[k] = fmax(pmax[k], p[k]);
				}
				for (int k = 0; k < 3; k++) {
					int64_t hi = P.mn[k] - 1;
					mlo[k] = (int64_t)floor(pmin[k]), mhi[k] = (int64_t)floor(pmax[k]) + 1;
					mlo[k] = mlo[k] < 0 ? 0 : mlo[k] > hi ? hi : mlo[k];
					mhi[k] = mhi[k] < 0 ? 0 : mhi[k] > hi ? hi : mhi[k];
					bn[k] = mhi[k] - mlo[k] + 1;
				}
				smaller += nvox(bn) < nvox(P.mn);
				float *mb = falloc(nvox(bn)), *ob = falloc(nb), *gb[3] = {falloc(nb), falloc(nb), falloc(nb)};
				for (int64_t z = 0; z < bn[2]; z++)
					for (int64_t y = 0; y < bn[1]; y++)
						memcpy(mb + (z * bn[1] + y) * bn[0],
						       P.M + ((mlo[2] + z) * P.mn[1] + mlo[1] + y) * P.mn[0] + mlo[0],
						       (size_t)bn[0] * sizeof(float));
				ffdp_vec uv = {{P.u[0] + j0, P.u[1] + j0, P.u[2] + j0}, {P.on[0], P.on[1], z1 - z0}, 3};
				ffdp_vec gv = {{gb[0], gb[1], gb[2]}, {P.on[0], P.on[1], z1 - z0}, 3};
				ffdp_sample_args sa = a;
				sa.moving = (ffdp_img){mb, {bn[0], bn[1], bn[2]}};
				memcpy(sa.m_lo, mlo, sizeof(mlo));
				memcpy(sa.m_full, P.mn, sizeof(P.mn));
				sa.u = &uv;
				sa.lo[2] = z0;
				sa.out = (ffdp_img){ob, {P.on[0], P.on[1], z1 - z0}};
				s = ffdp_op_sample(be, &sa, &err);
				diff += memcmp(ob, full + j0, (size_t)nb * sizeof(float)) != 0;
				if (!s && in == FFDP_INTERP_LINEAR) {
					ffdp_sample_grad_args gb_a = {&sa, {gout + j0, {P.on[0], P.on[1], z1 - z0}}, &gv, 0,
								      NULL, NULL, NULL, NULL};
					s = ffdp_op_sample_grad(be, &gb_a, &err);
					for (int c = 0; c < 3; c++)
						gdiff += memcmp(gb[c], gfull[c] + j0, (size_t)nb * sizeof(float)) != 0;
				}
				free(mb), free(ob), free(gb[0]), free(gb[1]), free(gb[2]);
			}
			CHECK(s == FFDP_OK && diff == 0 && gdiff == 0 && smaller > 0,
			      "moving box %s %s: 6 output slabs sampling only their moving box give the whole "
			      "volume's bits (%lld slabs differ, %lld gu components differ; %lld boxes smaller than M)",
			      interp_name[in], pad_name[pad], (long long)diff, (long long)gdiff, (long long)smaller);
		}
	/* a box that does not fit the volume is refused */
	ffdp_sample_args bad = prob_args(&P, &u, full, FFDP_INTERP_LINEAR, FFDP_PAD_ZERO);
	bad.m_full[0] = P.mn[0], bad.m_full[1] = P.mn[1], bad.m_full[2] = P.mn[2];
	bad.m_lo[2] = 1;
	CHECK(ffdp_op_sample(be, &bad, &err) == FFDP_ERR_ARG, "a moving box past the volume's end is refused: %s",
	      err.msg);
	free(full), free(gout), free(gfull[0]), free(gfull[1]), free(gfull[2]);
	prob_free(&P);
}

/* The z gate: three gates covering the moving planes, each sampling
 * through a box of its planes plus the one above, write every voxel once
 * with the whole volume's bits (forward, every interpolation and pad, and
 * gu). */
static void test_gate(tu_rng *r)
{
	prob P = prob_make(r, 1, 1, 0);
	int64_t no = nvox(P.on), plane = P.mn[0] * P.mn[1], cuts[4] = {0, 5, 9, P.mn[2]};
	float *full = falloc(no), *ob = falloc(no), *gf[3], *gg[3], *gout = falloc(no);
	ffdp_vec u = prob_u(&P);
	for (int c = 0; c < 3; c++)
		gf[c] = falloc(no), gg[c] = falloc(no);
	for (int64_t j = 0; j < no; j++)
		gout[j] = (float)(tu_uniform(r) - 0.5);
	ffdp_vec gfv = {{gf[0], gf[1], gf[2]}, {P.on[0], P.on[1], P.on[2]}, 3};
	ffdp_vec ggv = {{gg[0], gg[1], gg[2]}, {P.on[0], P.on[1], P.on[2]}, 3};
	for (int in = 0; in < 3; in++)
		for (int pad = 0; pad < 2; pad++) {
			ffdp_sample_args a = prob_args(&P, &u, full, (ffdp_interp)in, (ffdp_pad)pad);
			ffdp_status s = ffdp_op_sample(be, &a, &err);
			ffdp_sample_grad_args ga = {&a, {gout, {P.on[0], P.on[1], P.on[2]}}, &gfv, 0, NULL, NULL, NULL, NULL};
			if (!s && in == FFDP_INTERP_LINEAR)
				s = ffdp_op_sample_grad(be, &ga, &err);
			for (int64_t j = 0; j < no; j++)
				ob[j] = NAN, gg[0][j] = gg[1][j] = gg[2][j] = NAN;
			for (int g = 0; g < 3 && !s; g++) {
				int64_t z0 = cuts[g], z1 = cuts[g + 1] < P.mn[2] ? cuts[g + 1] + 1 : cuts[g + 1];
				ffdp_sample_args b = a;
				b.moving = (ffdp_img){P.M + z0 * plane, {P.mn[0], P.mn[1], z1 - z0}};
				b.m_lo[2] = z0;
				memcpy(b.m_full, P.mn, sizeof(P.mn));
				b.gate[0] = cuts[g], b.gate[1] = cuts[g + 1];
				b.out.p = ob;
				s = ffdp_op_sample(be, &b, &err);
				ffdp_sample_grad_args gb = {&b, {gout, {P.on[0], P.on[1], P.on[2]}}, &ggv, 0, NULL, NULL, NULL, NULL};
				if (!s && in == FFDP_INTERP_LINEAR)
					s = ffdp_op_sample_grad(be, &gb, &err);
			}
			int diff = memcmp(ob, full, (size_t)no * sizeof(float)) != 0, gdiff = 0;
			for (int c = 0; c < 3 && in == FFDP_INTERP_LINEAR; c++)
				gdiff |= memcmp(gg[c], gf[c], (size_t)no * sizeof(float)) != 0;
			CHECK(s == FFDP_OK && !diff && !gdiff,
			      "gate %s %s: 3 gated boxes write every voxel once with the whole volume's bits%s (%s)",
			      interp_name[in], pad_name[pad], in == FFDP_INTERP_LINEAR ? ", gu too" : "",
			      s ? err.msg : "ok");
		}
	ffdp_sample_args a = prob_args(&P, &u, full, FFDP_INTERP_LINEAR, FFDP_PAD_ZERO);
	double gW[12] = {0};
	a.gate[0] = 0, a.gate[1] = 3;
	ffdp_sample_grad_args gw = {&a, {gout, {P.on[0], P.on[1], P.on[2]}}, NULL, 0, gW, NULL, NULL, NULL};
	CHECK(ffdp_op_sample_grad(be, &gw, &err) == FFDP_ERR_ARG, "gW through a gate is refused: %s", err.msg);
	free(full), free(ob), free(gout);
	for (int c = 0; c < 3; c++)
		free(gf[c]), free(gg[c]);
	prob_free(&P);
}

/* gW is reproducible: each plane's 12 sums (gW_z) are the op's on that
 * plane alone, gW is their total in plane order, and 1 and 2 threads give
 * the same bits. */
static void test_gw_planes(tu_rng *r)
{
	prob P = prob_make(r, 1, 1, 0);
	int64_t no = nvox(P.on), plane = P.on[0] * P.on[1], bad = 0;
	float *gout = falloc(no);
	double gW[2][12], *gz = calloc((size_t)(12 * P.on[2]), sizeof(double)), tot[12] = {0};
	ffdp_vec u = prob_u(&P);
	for (int64_t j = 0; j < no; j++)
		gout[j] = (float)(tu_uniform(r) - 0.5);
	ffdp_sample_args a = prob_args(&P, &u, NULL, FFDP_INTERP_LINEAR, FFDP_PAD_BORDER);
	int keep = omp_get_max_threads();
	for (int t = 0; t < 2; t++) {
		memset(gW[t], 0, sizeof(gW[t]));
		omp_set_num_threads(t + 1);
		ffdp_sample_grad_args ga = {&a, {gout, {P.on[0], P.on[1], P.on[2]}}, NULL, 0, gW[t], NULL, gz, NULL};
		ffdp_op_sample_grad(be, &ga, &err);
	}
	omp_set_num_threads(keep);
	for (int64_t z = 0; z < P.on[2]; z++) {
		double g1[12] = {0};
		ffdp_vec uz = {{P.u[0] + z * plane, P.u[1] + z * plane, P.u[2] + z * plane}, {P.on[0], P.on[1], 1}, 3};
		ffdp_sample_args b = a;
		b.u = &uz;
		b.lo[2] = z;
		ffdp_sample_grad_args gb = {&b, {gout + z * plane, {P.on[0], P.on[1], 1}}, NULL, 0, g1, NULL, NULL, NULL};
		ffdp_op_sample_grad(be, &gb, &err);
		bad += memcmp(g1, gz + 12 * z, sizeof(g1)) != 0;
		for (int k = 0; k < 12; k++)
			tot[k] += gz[12 * z + k];
	}
	CHECK(bad == 0 && !memcmp(tot, gW[0], sizeof(tot)) && !memcmp(gW[0], gW[1], sizeof(tot)),
	      "gW: %lld of %lld planes differ from the op on the plane alone; total in plane order %s; 1 vs 2 threads %s",
	      (long long)bad, (long long)P.on[2], memcmp(tot, gW[0], sizeof(tot)) ? "differs" : "equal",
	      memcmp(gW[0], gW[1], sizeof(tot)) ? "differ" : "equal");
	free(gout), free(gz);
	prob_free(&P);
}

/* 2-D ignores W's z column: the box's z index (lo[2]) does not matter. */
static void test_2d_ignores_z(tu_rng *r)
{
	prob P = prob_make(r, 0, 1, 0);
	int64_t no = nvox(P.on), diff = 0;
	float *o0 = falloc(no), *o5 = falloc(no);
	ffdp_vec u = prob_u(&P);
	ffdp_sample_args a = prob_args(&P, &u, o0, FFDP_INTERP_LINEAR, FFDP_PAD_ZERO);
	ffdp_status s = ffdp_op_sample(be, &a, &err);
	a.out.p = o5, a.lo[2] = 5;
	if (s == FFDP_OK)
		s = ffdp_op_sample(be, &a, &err);
	for (int64_t j = 0; j < no; j++)
		diff += memcmp(&o0[j], &o5[j], sizeof(float)) != 0;
	CHECK(s == FFDP_OK && diff == 0 && P.W[2] != 0.0,
	      "2-D: W's z column is ignored (lo[2] = 5 gives the same bits as lo[2] = 0; %lld differ)",
	      (long long)diff);
	free(o0), free(o5);
	prob_free(&P);
}

/* W = [I | t], t integer: out(i) = M(i + t) exactly (zero or clamped outside). */
static void test_shift(tu_rng *r, int d3)
{
	int64_t n[3] = {13, 19, d3 ? 15 : 1}, nm = nvox(n), t[3] = {-2, 3, d3 ? 1 : 0};
	float *M = falloc(nm), *out = falloc(nm);
	tu_fill_smooth(r, M, n, 0.05);
	for (int in = 0; in < 3; in++)
		for (int pad = 0; pad < 2; pad++) {
			ffdp_sample_args a;
			memset(&a, 0, sizeof(a));
			a.moving.p = M, a.out.p = out;
			memcpy(a.moving.n, n, sizeof(n));
			memcpy(a.out.n, n, sizeof(n));
			for (int k = 0; k < 3; k++)
				a.W[4 * k + k] = 1.0, a.W[4 * k + 3] = (double)t[k];
			a.interp = (ffdp_interp)in, a.pad = (ffdp_pad)pad;
			ffdp_status s = ffdp_op_sample(be, &a, &err);
			int64_t bad = 0;
			for (int64_t j = 0; j < nm; j++) {
				int64_t c[3] = {j % n[0] + t[0], (j / n[0]) % n[1] + t[1], j / (n[0] * n[1]) + t[2]};
				int ins = 1;
				for (int k = 0; k < 3; k++) {
					ins &= c[k] >= 0 && c[k] < n[k];
					c[k] = c[k] < 0 ? 0 : c[k] >= n[k] ? n[k] - 1 : c[k];
				}
				float want = (ins || pad == FFDP_PAD_BORDER) ? M[(c[2] * n[1] + c[1]) * n[0] + c[0]] : 0.0f;
				bad += out[j] != want;
			}
			CHECK(s == FFDP_OK && bad == 0, "integer shift %dD %s %s: exact shifted copy (%lld wrong)",
			      d3 ? 3 : 2, interp_name[in], pad_name[pad], (long long)bad);
		}
	free(M);
	free(out);
}

/* A half-voxel shift in x puts every point midway between two labels: an
 * exact tie, which goes to the smaller label. */
static void test_label_ties(tu_rng *r)
{
	int64_t n[3] = {13, 19, 15}, nm = nvox(n);
	float *M = falloc(nm), *out = falloc(nm);
	for (int64_t i = 0; i < nm; i++)
		M[i] = label_set[tu_next(r) % 7];
	for (int pad = 0; pad < 2; pad++) {
		ffdp_sample_args a;
		memset(&a, 0, sizeof(a));
		a.moving.p = M, a.out.p = out;
		memcpy(a.moving.n, n, sizeof(n));
		memcpy(a.out.n, n, sizeof(n));
		a.W[0] = a.W[5] = a.W[10] = 1.0, a.W[3] = 0.5;
		a.interp = FFDP_INTERP_LABEL, a.pad = (ffdp_pad)pad;
		ffdp_status s = ffdp_op_sample(be, &a, &err);
		int64_t bad = 0, tied = 0;
		for (int64_t j = 0; j < nm; j++) {
			float want = M[j];
			if (j % n[0] < n[0] - 1 && M[j + 1] != M[j])
				want = fminf(M[j], M[j + 1]), tied++;
			bad += out[j] != want;
		}
		CHECK(s == FFDP_OK && bad == 0 && tied > nm / 2,
		      "label ties %s: %lld exact ties go to the smaller label (%lld wrong)", pad_name[pad],
		      (long long)tied, (long long)bad);
	}
	free(M);
	free(out);
}

/* ---- gradients ------------------------------------------------------------------- */

static double ref_loss(const prob *P, const double W[12], const double *M, const float *gout, ffdp_pad pad)
{
	double L = 0, zero[3] = {0, 0, 0}, p[3];
	for (int64_t j = 0; j < nvox(P->on); j++) {
		ref_p(P, W, j, zero, p);
		L += gout[j] * ref_linear(M, P->mn, P->d3, p, pad);
	}
	return L;
}

static double max_err(const double *got, const double *want, int64_t n)
{
	double d = 0;
	for (int64_t i = 0; i < n; i++)
		d = fmax(d, fabs(got[i] - want[i]));
	return d / fmax(tu_max_abs(want, n), 1e-12);
}

/* gM by central differences of the reference loss (linear in M, step 1e-3).
 * Output voxels whose (clamped) point lies 2 or more voxels from m along
 * some axis cannot see M[m]; their terms cancel exactly and are skipped. */
static void fd_gM(const prob *P, const float *gout, ffdp_pad pad, double *fd)
{
	int64_t no = nvox(P->on), nm = nvox(P->mn);
	int na = P->d3 ? 3 : 2;
	double *pts = malloc((size_t)no * 3 * sizeof(double)), zero[3] = {0, 0, 0};
	for (int64_t j = 0; j < no; j++)
		ref_p(P, P->W, j, zero, pts + 3 * j);
#pragma omp parallel
	{
		double *M = malloc((size_t)nm * sizeof(double)), h = 1e-3;
		memcpy(M, P->Md, (size_t)nm * sizeof(double));
#pragma omp for schedule(dynamic, 16)
		for (int64_t m = 0; m < nm; m++) {
			double mc[3] = {(double)(m % P->mn[0]), (double)((m / P->mn[0]) % P->mn[1]),
					(double)(m / (P->mn[0] * P->mn[1]))}, Lp = 0, Lm = 0;
			for (int64_t j = 0; j < no; j++) {
				const double *p = pts + 3 * j;
				int near = 1;
				for (int a = 0; a < na; a++) {
					double q = p[a];
					if (pad == FFDP_PAD_BORDER)
						q = fmin(fmax(q, 0.0), (double)(P->mn[a] - 1));
					near &= fabs(q - mc[a]) < 2.0;
				}
				if (!near)
					continue;
				M[m] = P->Md[m] + h;
				Lp += gout[j] * ref_linear(M, P->mn, P->d3, p, pad);
				M[m] = P->Md[m] - h;
				Lm += gout[j] * ref_linear(M, P->mn, P->d3, p, pad);
				M[m] = P->Md[m];
			}
			fd[m] = (Lp - Lm) / (2 * h);
		}
		free(M);
	}
	free(pts);
}

/* accumulate: gu, gW, gM start from random values and must grow by the gradient. */
static void test_grad(tu_rng *r, int d3, int with_u, ffdp_pad pad, int accumulate)
{
	prob P = prob_make(r, d3, with_u, 0);
	int64_t no = nvox(P.on), nm = nvox(P.mn);
	int moved = with_u ? nudge(&P, 1e-3, FFDP_INTERP_LINEAR, pad) : place_away(&P, r, 2e-5);
	float *gout = falloc(no), *gu[3] = {NULL, NULL, NULL}, *gM = falloc(nm), *gM0 = falloc(nm);
	double gW[12], gW0[12];
	tu_fill_uniform(r, gout, no, -1.0, 1.0);
	tu_fill_uniform(r, gM0, nm, -1.0, 1.0);
	memcpy(gM, gM0, (size_t)nm * sizeof(float));
	for (int k = 0; k < 12; k++)
		gW0[k] = gW[k] = accumulate ? tu_normal(r) : 0.0;
	if (!accumulate)
		memset(gM, 0, (size_t)nm * sizeof(float)), memset(gM0, 0, (size_t)nm * sizeof(float));
	float *gu0[3] = {NULL, NULL, NULL};
	for (int c = 0; c < P.nc; c++) {
		gu[c] = falloc(no), gu0[c] = falloc(no);
		tu_fill_uniform(r, gu0[c], no, -1.0, 1.0);
		memcpy(gu[c], gu0[c], (size_t)no * sizeof(float));
	}
	ffdp_vec u = prob_u(&P), guv = {{gu[0], gu[1], gu[2]}, {P.on[0], P.on[1], P.on[2]}, P.nc};
	ffdp_sample_args a = prob_args(&P, &u, NULL, FFDP_INTERP_LINEAR, pad);
	ffdp_img gMv = {gM, {P.mn[0], P.mn[1], P.mn[2]}};
	ffdp_sample_grad_args ga = {&a, {gout, {P.on[0], P.on[1], P.on[2]}}, P.nc ? &guv : NULL, accumulate, gW,
				    &gMv, NULL, NULL};
	CHECK_OK(ffdp_op_sample_grad(be, &ga, &err), &err, "sample_grad %dD %s %s u%s (%d points %s)",
		 d3 ? 3 : 2, pad_name[pad], with_u ? "with" : "without", accumulate ? ", accumulating" : "",
		 moved, with_u ? "nudged off knots" : "tries to place W off knots");

	/* gu: only out(j) depends on u(j), so FD of that term is FD of L */
	if (with_u) {
		int64_t n = no * P.nc;
		double *got = malloc((size_t)n * sizeof(double)), *fd = malloc((size_t)n * sizeof(double));
		double h = 1e-4, p[3], vp, vm;
		for (int64_t j = 0; j < no; j++)
			for (int c = 0; c < P.nc; c++) {
				double du[3] = {0, 0, 0};
				du[c] = h;
				ref_p(&P, P.W, j, du, p);
				vp = ref_linear(P.Md, P.mn, d3, p, pad);
				du[c] = -h;
				ref_p(&P, P.W, j, du, p);
				vm = ref_linear(P.Md, P.mn, d3, p, pad);
				fd[c * no + j] = gout[j] * (vp - vm) / (2 * h);
				got[c * no + j] = (double)gu[c][j] - (accumulate ? gu0[c][j] : 0.0f);
			}
		double e = max_err(got, fd, n);
		CHECK(e < 1e-3, "  gu vs central FD (h 1e-4 mm): max err %.2e of max |gu| %.3g", e, tu_max_abs(fd, n));
		free(got), free(fd);
	}
	/* gW */
	{
		double fd[12], got[12], W[12], h = with_u ? 1e-6 : 1e-7;
		for (int k = 0; k < 12; k++) {
			memcpy(W, P.W, sizeof(W));
			W[k] = P.W[k] + h;
			double Lp = ref_loss(&P, W, P.Md, gout, pad);
			W[k] = P.W[k] - h;
			double Lm = ref_loss(&P, W, P.Md, gout, pad);
			fd[k] = (Lp - Lm) / (2 * h);
			got[k] = gW[k] - gW0[k];
		}
		double e = max_err(got, fd, 12);
		CHECK(e < 1e-3, "  gW (3x4) vs central FD (h %.0e): max err %.2e of max |gW| %.3g", h, e,
		      tu_max_abs(fd, 12));
		if (!d3) {
			double zsum = fabs(got[2]) + fabs(got[6]) + fabs(got[8]) + fabs(got[9]) + fabs(got[10]) +
				      fabs(got[11]);
			CHECK(zsum == 0.0, "  gW: 2-D leaves the z row and column untouched");
		}
	}
	/* gM */
	{
		double *fd = malloc((size_t)nm * sizeof(double)), *got = malloc((size_t)nm * sizeof(double));
		fd_gM(&P, gout, pad, fd);
		for (int64_t m = 0; m < nm; m++)
			got[m] = (double)gM[m] - gM0[m];
		double e = max_err(got, fd, nm);
		CHECK(e < 1e-3, "  gM (scatter) vs central FD: max err %.2e of max |gM| %.3g", e, tu_max_abs(fd, nm));
		free(fd), free(got);
	}
	for (int c = 0; c < 3; c++)
		free(gu[c]), free(gu0[c]);
	free(gout), free(gM), free(gM0);
	prob_free(&P);
}

/* ---- SIMD paths ------------------------------------------------------------------ */

static int same_bits(const float *a, const float *b, int64_t n)
{
	return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* The forward and the backward on the forced scalar path. */
static ffdp_status sample_scalar(const ffdp_sample_args *a)
{
	ffdp_cpu_force_scalar = 1;
	ffdp_status s = ffdp_op_sample(be, a, &err);
	ffdp_cpu_force_scalar = 0;
	return s;
}

static ffdp_status sample_grad_scalar(const ffdp_sample_grad_args *g)
{
	ffdp_cpu_force_scalar = 1;
	ffdp_status s = ffdp_op_sample_grad(be, g, &err);
	ffdp_cpu_force_scalar = 0;
	return s;
}

/* The AVX2 forward (linear, 3-D, u of 3 components or none) and backward
 * (gu and gW) against the forced scalar path: the same bits, with points
 * inside, near and outside M (far outside, NaN), and a row length that
 * leaves a tail. */
static void test_simd_bits(tu_rng *r)
{
	if (!ffdp_cpu_use_avx2()) {
		CHECK(1, "simd: no AVX2+FMA on this CPU, scalar path only");
		return;
	}
	const int64_t mn[3] = {37, 29, 23}, on[3] = {45, 21, 19};
	int64_t nm = nvox(mn), no = nvox(on);
	float *M = falloc(nm), *u[3], *gout = falloc(no), *o1 = falloc(no), *o2 = falloc(no);
	float *g1[3], *g2[3];
	tu_fill_uniform(r, M, nm, -1.0, 1.0);
	tu_fill_uniform(r, gout, no, -1.0, 1.0);
	for (int c = 0; c < 3; c++) {
		u[c] = falloc(no), g1[c] = falloc(no), g2[c] = falloc(no);
		tu_fill_uniform(r, u[c], no, -2.0, 2.0);
	}
	/* points far outside and NaN take the padded path's clamps */
	u[0][5] = NAN, u[1][77] = 1e30f, u[2][200] = -1e30f, u[0][301] = 40.0f;
	ffdp_vec uv = {{u[0], u[1], u[2]}, {on[0], on[1], on[2]}, 3};
	ffdp_vec gv1 = {{g1[0], g1[1], g1[2]}, {on[0], on[1], on[2]}, 3};
	ffdp_vec gv2 = {{g2[0], g2[1], g2[2]}, {on[0], on[1], on[2]}, 3};
	double W[12] = {0.83, 0.07, -0.02, 1.7, -0.05, 1.21, 0.03, 0.4, 0.01, -0.04, 1.1, 1.3};
	double B[9] = {0.9, 0.1, 0.0, -0.1, 1.2, 0.05, 0.02, 0.0, 0.8};
	for (int pad = 0; pad < 2; pad++)
		for (int hu = 0; hu < 2; hu++)
			for (int acc = 0; acc < 2; acc++) {
				ffdp_sample_args a;
				memset(&a, 0, sizeof(a));
				a.moving = (ffdp_img){M, {mn[0], mn[1], mn[2]}};
				memcpy(a.W, W, sizeof(W)), memcpy(a.B, B, sizeof(B));
				a.u = hu ? &uv : NULL, a.lo[0] = 3, a.lo[1] = -2, a.lo[2] = 1;
				a.pad = (ffdp_pad)pad, a.accumulate = acc;
				tu_fill_uniform(r, o1, no, -1.0, 1.0);
				memcpy(o2, o1, (size_t)no * sizeof(float));
				a.out = (ffdp_img){o1, {on[0], on[1], on[2]}};
				ffdp_status s1 = ffdp_op_sample(be, &a, &err);
				a.out.p = o2;
				ffdp_status s2 = sample_scalar(&a);
				CHECK(!s1 && !s2 && same_bits(o1, o2, no), "simd: sample %s pad, %s u%s: AVX2 = scalar bits",
				      pad_name[pad], hu ? "with" : "without", acc ? ", accumulating" : "");
				/* backward: gu (with u), gW and its planes gW_z, whose
				 * row sums run in 8 lanes of global x mod 8 */
				for (int c = 0; c < 3; c++) {
					tu_fill_uniform(r, g1[c], no, -1.0, 1.0);
					memcpy(g2[c], g1[c], (size_t)no * sizeof(float));
				}
				double gW1[12], gW2[12], gz1[12 * 19], gz2[12 * 19];
				for (int k = 0; k < 12; k++)
					gW1[k] = gW2[k] = tu_normal(r);
				ffdp_sample_grad_args ga = {&a, {gout, {on[0], on[1], on[2]}}, hu ? &gv1 : NULL, acc, gW1, NULL,
							    gz1, NULL};
				s1 = ffdp_op_sample_grad(be, &ga, &err);
				ga.gu = hu ? &gv2 : NULL, ga.gW = gW2, ga.gW_z = gz2;
				s2 = sample_grad_scalar(&ga);
				int same = !s1 && !s2 && !memcmp(gW1, gW2, sizeof(gW1)) && !memcmp(gz1, gz2, sizeof(gz1));
				for (int c = 0; c < 3; c++)
					same &= same_bits(g1[c], g2[c], no);
				CHECK(same, "simd: sample_grad %s gW, gW_z %s pad%s: AVX2 = scalar bits", hu ? "gu," : "",
				      pad_name[pad], acc ? ", accumulating" : "");
			}
	for (int c = 0; c < 3; c++)
		free(u[c]), free(g1[c]), free(g2[c]);
	free(M), free(gout), free(o1), free(o2);
}

/* The AVX2 rows on an oblique grid (a rotation about an oblique axis, anisotropic
 * scales) with row lengths 8, 9 and 17 (one group, a group and a one-voxel tail, two
 * groups and a tail) and output boxes that start off 0 mod 8, without u (groups of one
 * row, runs, and groups whose rows differ) and with a smooth u of under a voxel or a
 * rough one of two: forward and backward against the forced scalar path, bit for bit. */
static void test_simd_rows(tu_rng *r)
{
	if (!ffdp_cpu_use_avx2()) {
		CHECK(1, "simd rows: no AVX2+FMA on this CPU, scalar path only");
		return;
	}
	const int64_t mn[3] = {33, 27, 25}, lens[3] = {8, 9, 17};
	int64_t nm = nvox(mn);
	float *M = falloc(nm);
	tu_fill_uniform(r, M, nm, -1.0, 1.0);
	double R[9], W[12], B[9];
	const double sc[3] = {0.93, 1.31, 0.77};
	tu_random_rotation(r, R);
	for (int k = 0; k < 3; k++) {
		for (int a = 0; a < 3; a++)
			W[4 * k + a] = R[3 * k + a] * sc[a], B[3 * k + a] = R[3 * a + k] / sc[k];
		W[4 * k + 3] = 0.5 * (double)(mn[k] - 1) - 6.0 * (W[4 * k] + W[4 * k + 1] + W[4 * k + 2]);
	}
	for (int li = 0; li < 3; li++) {
		const int64_t on[3] = {lens[li], 11, 7};
		int64_t no = nvox(on);
		float *u[3], *o1 = falloc(no), *o2 = falloc(no), *gout = falloc(no), *g1[3], *g2[3];
		tu_fill_uniform(r, gout, no, -1.0, 1.0);
		for (int c = 0; c < 3; c++)
			u[c] = falloc(no), g1[c] = falloc(no), g2[c] = falloc(no);
		ffdp_vec uv = {{u[0], u[1], u[2]}, {on[0], on[1], on[2]}, 3};
		for (int kind = 0; kind < 3; kind++) {
			for (int c = 0; c < 3 && kind; c++) {
				if (kind == 1)
					tu_fill_smooth(r, u[c], on, 0.0);
				else
					tu_fill_uniform(r, u[c], no, -2.0, 2.0);
			}
			for (int64_t j = 0; j < no && kind == 1; j++)
				for (int c = 0; c < 3; c++)
					u[c][j] *= 0.4f;
			int same_f = 1, same_b = 1;
			for (int pad = 0; pad < 2; pad++) {
				ffdp_sample_args a;
				memset(&a, 0, sizeof(a));
				a.moving = (ffdp_img){M, {mn[0], mn[1], mn[2]}};
				memcpy(a.W, W, sizeof(W)), memcpy(a.B, B, sizeof(B));
				a.u = kind ? &uv : NULL, a.lo[0] = 5 + li, a.lo[1] = 3, a.lo[2] = 2 * li;
				a.pad = (ffdp_pad)pad;
				a.out = (ffdp_img){o1, {on[0], on[1], on[2]}};
				ffdp_status s1 = ffdp_op_sample(be, &a, &err);
				a.out.p = o2;
				ffdp_status s2 = sample_scalar(&a);
				same_f &= !s1 && !s2 && same_bits(o1, o2, no);
				double gW1[12] = {0}, gW2[12] = {0};
				ffdp_vec gv1 = {{g1[0], g1[1], g1[2]}, {on[0], on[1], on[2]}, 3};
				ffdp_vec gv2 = {{g2[0], g2[1], g2[2]}, {on[0], on[1], on[2]}, 3};
				ffdp_sample_grad_args ga = {&a, {gout, {on[0], on[1], on[2]}}, kind ? &gv1 : NULL, 0, gW1,
							    NULL, NULL, NULL};
				s1 = ffdp_op_sample_grad(be, &ga, &err);
				ga.gu = kind ? &gv2 : NULL, ga.gW = gW2;
				s2 = sample_grad_scalar(&ga);
				same_b &= !s1 && !s2 && !memcmp(gW1, gW2, sizeof(gW1));
				for (int c = 0; c < 3 && kind; c++)
					same_b &= same_bits(g1[c], g2[c], no);
			}
			static const char *kind_name[] = {"no u", "smooth u", "rough u"};
			CHECK(same_f && same_b, "simd rows: oblique grid, rows of %lld, %s, both pads: forward and "
			      "backward AVX2 = scalar bits", (long long)on[0], kind_name[kind]);
		}
		for (int c = 0; c < 3; c++)
			free(u[c]), free(g1[c]), free(g2[c]);
		free(o1), free(o2), free(gout);
	}
	free(M);
}

/* The linear 3-D sampler's fixed-point frame (32.32 sums of W [i;1], B u
 * added to the fraction in float) at global indices near its 2^20 limit:
 * against the double reference within the frame's documented bound (W
 * rounded to 2^-33, the fraction to 2^-23, the float sum of fraction and
 * B u), and the AVX2 path against the scalar one, bit for bit. */
static void test_fixed_frame(tu_rng *r)
{
	const int64_t mn[3] = {31, 26, 21}, on[3] = {45, 5, 4};
	const int64_t lo[3] = {(1 << 20) - 45, 300000, 7};
	int64_t nm = nvox(mn), no = nvox(on);
	float *M = falloc(nm), *u[3], *o1 = falloc(no), *o2 = falloc(no);
	double *Md = malloc((size_t)nm * sizeof(double));
	tu_fill_uniform(r, M, nm, -1.0, 1.0);
	for (int64_t i = 0; i < nm; i++)
		Md[i] = M[i];
	for (int c = 0; c < 3; c++) {
		u[c] = falloc(no);
		tu_fill_uniform(r, u[c], no, -2.0, 2.0);
	}
	ffdp_vec uv = {{u[0], u[1], u[2]}, {on[0], on[1], on[2]}, 3};
	double L[9] = {0.93, 0.21, -0.08, -0.17, 1.07, 0.05, 0.06, -0.11, 0.88}, W[12];
	double B[9] = {0.9, 0.1, 0.0, -0.1, 1.2, 0.05, 0.02, 0.0, 0.8};
	for (int k = 0; k < 3; k++) { /* the box's centre onto M's */
		double c = 0.5 * (double)(mn[k] - 1);
		for (int a = 0; a < 3; a++)
			W[4 * k + a] = L[3 * k + a], c -= L[3 * k + a] * ((double)lo[a] + 0.5 * (double)(on[a] - 1));
		W[4 * k + 3] = c;
	}
	for (int pad = 0; pad < 2; pad++)
		for (int hu = 0; hu < 2; hu++) {
			ffdp_sample_args a;
			memset(&a, 0, sizeof(a));
			a.moving = (ffdp_img){M, {mn[0], mn[1], mn[2]}};
			memcpy(a.W, W, sizeof(W)), memcpy(a.B, B, sizeof(B)), memcpy(a.lo, lo, sizeof(a.lo));
			a.u = hu ? &uv : NULL, a.pad = (ffdp_pad)pad;
			a.out = (ffdp_img){o1, {on[0], on[1], on[2]}};
			ffdp_status s1 = ffdp_op_sample(be, &a, &err);
			a.out.p = o2;
			ffdp_status s2 = sample_scalar(&a);
			double worst = 0.0, bound = 0.0;
			for (int64_t j = 0; j < no && !s1; j++) {
				double g[3] = {(double)(lo[0] + j % on[0]), (double)(lo[1] + (j / on[0]) % on[1]),
					       (double)(lo[2] + j / (on[0] * on[1]))}, p[3], bu = 0.0;
				for (int k = 0; k < 3; k++) {
					p[k] = W[4 * k] * g[0] + W[4 * k + 1] * g[1] + W[4 * k + 2] * g[2] + W[4 * k + 3];
					for (int c = 0; c < 3 && hu; c++)
						p[k] += B[3 * k + c] * (double)u[c][j], bu += fabs(B[3 * k + c] * u[c][j]);
				}
				/* per axis |dp| <= 2^-33 (sum |g| + 1) + 2^-21 (1 + sum |B u|); M's
				 * neighbours differ by <= 2, so |d out| <= 3 * 2 |dp| */
				double dp = 0x1p-33 * (g[0] + g[1] + g[2] + 1.0) + 0x1p-21 * (1.0 + bu);
				double e = fabs((double)o1[j] - ref_linear(Md, mn, 1, p, (ffdp_pad)pad));
				worst = fmax(worst, e - 6.0 * dp);
				bound = fmax(bound, 6.0 * dp + 1e-6);
			}
			CHECK(!s1 && worst <= 1e-6, "fixed frame at index 2^20 - 45, %s pad, %s u: |out - double ref| "
			      "within the frame's bound %.1e (excess %.1e)", pad_name[pad], hu ? "with" : "without", bound,
			      worst);
			CHECK(!s2 && same_bits(o1, o2, no), "fixed frame, %s pad, %s u: AVX2 = scalar bits", pad_name[pad],
			      hu ? "with" : "without");
		}
	for (int c = 0; c < 3; c++)
		free(u[c]);
	free(M), free(Md), free(o1), free(o2);
}

/* ---- timing ---------------------------------------------------------------------- */

static double clock_s(clockid_t id)
{
	struct timespec t;
	clock_gettime(id, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Best wall time of a few calls, and the CPU time (all threads) of that
 * call: on a shared machine the CPU time is the steadier measure. */
static void time_calls(ffdp_status (*call)(const void *), const void *arg, int n, double *wall, double *cpu)
{
	*wall = 1e30;
	for (int it = 0; it < n; it++) {
		double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
		call(arg);
		double t = clock_s(CLOCK_MONOTONIC) - t0, c = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
		if (t < *wall)
			*wall = t, *cpu = c;
	}
}

static ffdp_status call_sample(const void *a)
{
	return ffdp_op_sample(be, (const ffdp_sample_args *)a, &err);
}

static ffdp_status call_sample_grad(const void *a)
{
	return ffdp_op_sample_grad(be, (const ffdp_sample_grad_args *)a, &err);
}

/* 192^3, 1 mm, W a 5 degree rotation about the centre plus a shift, smooth u
 * of a few mm.  Floor: u 12 B read + out 4 B written + M 4 B read. */
static void bench_192(void)
{
	int64_t n[3] = {192, 192, 192}, nv = nvox(n);
	float *M = falloc(nv), *out = falloc(nv), *u[3] = {falloc(nv), falloc(nv), falloc(nv)};
	tu_rng r = tu_rng_make(99);
	if (!M || !out || !u[0] || !u[1] || !u[2]) {
		CHECK(0, "bench: allocation of 5 x 28 MB");
		return;
	}
	tu_fill_uniform(&r, M, nv, 0.0, 1.0);
	double t[6][192];
	for (int i = 0; i < 192; i++) {
		t[0][i] = 3.0 * sin(i / 17.0), t[1][i] = cos(i / 23.0), t[2][i] = 3.0 * sin(i / 19.0);
		t[3][i] = cos(i / 13.0), t[4][i] = 3.0 * sin(i / 29.0), t[5][i] = cos(i / 11.0);
	}
	for (int64_t j = 0; j < nv; j++) {
		int64_t x = j % 192, y = (j / 192) % 192, z = j / (192 * 192);
		u[0][j] = (float)(t[0][y] * t[1][z]);
		u[1][j] = (float)(t[2][z] * t[3][x]);
		u[2][j] = (float)(t[4][x] * t[5][y]);
	}
	ffdp_vec uv = {{u[0], u[1], u[2]}, {192, 192, 192}, 3};
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	a.moving.p = M, a.out.p = out;
	memcpy(a.moving.n, n, sizeof(n));
	memcpy(a.out.n, n, sizeof(n));
	double th = 5.0 * 3.141592653589793 / 180.0, c = cos(th), s = sin(th), m = 95.5;
	double W[12] = {c, -s, 0, m - c * m + s * m + 0.3, s, c, 0, m - s * m - c * m - 0.2, 0, 0, 1, 0.7};
	memcpy(a.W, W, sizeof(W));
	a.B[0] = a.B[4] = a.B[8] = 1.0;
	a.u = &uv;
	a.interp = FFDP_INTERP_LINEAR;
	double wall, cpu, nvd = (double)nv;
	time_calls(call_sample, &a, 5, &wall, &cpu);
	printf("bench: sample linear zero-pad with u, 192^3, %d threads: %.1f ms (cpu %.1f ms = %.1f ns/voxel), "
	       "floor 20 B/voxel = %.0f MB -> %.2f GB/s\n", ffdp_num_threads(), 1e3 * wall, 1e3 * cpu,
	       1e9 * cpu / nvd, 20e-6 * nvd, 20.0 * nvd / wall / 1e9);
	a.u = NULL;
	time_calls(call_sample, &a, 5, &wall, &cpu);
	printf("bench: same without u: %.1f ms (cpu %.1f ms), floor 8 B/voxel -> %.2f GB/s\n", 1e3 * wall,
	       1e3 * cpu, 8.0 * nvd / wall / 1e9);
	/* backward with gu and gW (gout reuses out): floor gout 4 + u 12 + gu 12 + M 4 B */
	float *gu[3] = {falloc(nv), falloc(nv), falloc(nv)};
	ffdp_vec guv = {{gu[0], gu[1], gu[2]}, {192, 192, 192}, 3};
	double gW[12] = {0};
	a.u = &uv;
	ffdp_sample_grad_args ga = {&a, {out, {192, 192, 192}}, &guv, 0, gW, NULL, NULL, NULL};
	if (gu[0] && gu[1] && gu[2]) {
		time_calls(call_sample_grad, &ga, 3, &wall, &cpu);
		printf("bench: sample_grad (gu, gW) 192^3: %.1f ms (cpu %.1f ms), floor 32 B/voxel -> %.2f GB/s\n",
		       1e3 * wall, 1e3 * cpu, 32.0 * nvd / wall / 1e9);
	}
	free(gu[0]), free(gu[1]), free(gu[2]);
	free(M), free(out), free(u[0]), free(u[1]), free(u[2]);
}

int main(void)
{
	tu_rng r = tu_rng_make(20260301);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "open the CPU backend");
	for (int d3 = 1; d3 >= 0; d3--)
		for (int with_u = 0; with_u < 2; with_u++)
			for (int pad = 0; pad < 2; pad++)
				for (int in = 0; in < 3; in++)
					test_forward(&r, d3, with_u, (ffdp_pad)pad, (ffdp_interp)in);
	test_accumulate(&r, 1, FFDP_INTERP_LINEAR);
	test_accumulate(&r, 0, FFDP_INTERP_NEAREST);
	test_shards(&r);
	test_moving_box(&r);
	test_gw_planes(&r);
	test_gate(&r);
	test_2d_ignores_z(&r);
	test_shift(&r, 1);
	test_shift(&r, 0);
	test_label_ties(&r);
	for (int d3 = 1; d3 >= 0; d3--)
		for (int pad = 0; pad < 2; pad++)
			test_grad(&r, d3, 1, (ffdp_pad)pad, pad == FFDP_PAD_BORDER);
	test_grad(&r, 1, 0, FFDP_PAD_ZERO, 0);
	test_grad(&r, 0, 0, FFDP_PAD_BORDER, 0);
	test_simd_bits(&r);
	test_simd_rows(&r);
	test_fixed_frame(&r);
	bench_192();
	ffdp_backend_close(be);
	return check_done();
}

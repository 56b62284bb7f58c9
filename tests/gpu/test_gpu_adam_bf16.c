/* bf16 Adam moments (FFDP_MOMENTS_BF16) on the CUDA backend against the
 * CPU backend.  The GPU updates in double and the CPU in float, so a word
 * may round to the next bf16 value where the update lies within float
 * rounding of a boundary: every m and v within one bf16 ulp plus float's
 * rounding of the update's terms (m = 0.9 m + 0.1 g cancels), and at most
 * 1 % of the words differ.  Two z-boxes with their index0 store the same
 * words as one call (the distributed rule); the warp step reads the same
 * words as the CPU's to 1e-5; moments_get/put agree bit for bit; the step's
 * state in device memory matches the CPU's.  Needs a
 * GPU: built with CUDA, labelled "gpu". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "gpu_pair.h"
#include "testutil.h"

/* Random words on host and device (same bits). */
static gp_vec words_new(gp_env *e, const int64_t n[3])
{
	gp_vec w = gp_vec_new(e, n, 0, 1);
	for (int c = 0; c < w.h.ncomp; c++) {
		for (int64_t i = 0; i < w.nv; i++)
			w.h.c[c][i] = tu_bf16_word((float)(tu_uniform(&e->rng) - 0.5), (float)(0.8 * tu_uniform(&e->rng)));
		ffdp_buf_upload(e->gpu, w.d.c[c], w.h.c[c], (size_t)w.nv * sizeof(float), &e->err);
	}
	return w;
}

/* New words of device d against host h, from old words w0 and gradient
 * g: the largest difference over (one ulp + 1e-6 of the update's terms),
 * and how many words differ. */
static void words_cmp(gp_env *e, const gp_vec *w, float *const *w0, const gp_vec *g, double *err, int64_t *ndiff)
{
	*err = 0, *ndiff = 0;
	for (int c = 0; c < w->h.ncomp; c++) {
		float *d = gp_d_get(e, w->d.c[c], w->nv);
		for (int64_t i = 0; i < w->nv; i++) {
			*ndiff += memcmp(&d[i], &w->h.c[c][i], 4) != 0;
			const double gi = g->h.c[c][i];
			for (int half = 0; half < 2; half++) {
				double a = tu_bf16_half(d[i], half), b = tu_bf16_half(w->h.c[c][i], half);
				double terms = half ? 0.99 * tu_bf16_half(w0[c][i], 1) + 0.01 * gi * gi
						    : 0.9 * fabs(tu_bf16_half(w0[c][i], 0)) + 0.1 * fabs(gi);
				if (a != b)
					*err = fmax(*err, fabs(a - b) / (tu_bf16_ulp(fmax(fabs(a), fabs(b))) + 1e-6 * terms));
			}
		}
		free(d);
	}
}

static void test_moments(gp_env *e, const int64_t n[3], int t)
{
	gp_vec g = gp_vec_new(e, n, -2, 2), w = words_new(e, n);
	float *w0[3] = {NULL, NULL, NULL};
	for (int c = 0; c < w.h.ncomp; c++) {
		w0[c] = gp_h_new(w.nv);
		memcpy(w0[c], w.h.c[c], (size_t)w.nv * sizeof(float));
	}
	ffdp_vec none = {{NULL, NULL, NULL}, {0, 0, 0}, 0};
	ffdp_adam_opts o = {t, 0.9, 0.99, 1e-8, FFDP_MOMENTS_BF16, 0, NULL, NULL};
	/* the boxes' copy first, from the same words */
	gp_vec wb = gp_vec_new(e, n, 0, 1);
	for (int c = 0; c < w.h.ncomp; c++)
		ffdp_buf_copy(e->gpu, wb.d.c[c], w.d.c[c], (size_t)w.nv * sizeof(float), &e->err);
	double nc = -1, ng = -1;
	ffdp_status sc = ffdp_op_adam_moments(e->cpu, g.h, w.h, none, &o, &nc, &e->err);
	CHECK_OK(sc, &e->err, "bf16 adam_moments %lldx%lldx%lld t = %d: CPU", (long long)n[0], (long long)n[1],
		 (long long)n[2], t);
	ffdp_status sg = ffdp_op_adam_moments(e->gpu, g.d, w.d, none, &o, &ng, &e->err);
	CHECK_OK(sg, &e->err, "  CUDA");
	if (!sc && !sg) {
		double we;
		int64_t nd;
		words_cmp(e, &w, w0, &g, &we, &nd);
		int64_t total = w.nv * w.h.ncomp;
		/* both backends take the moments and d in the same float operations */
		CHECK(we == 0.0 && nd == 0, "  the CPU's words bit for bit (%lld of %lld differ)", (long long)nd,
		      (long long)total);
		CHECK(ng == nc, "  the CPU's max_norm (%.17g vs %.17g)", ng, nc);
	}
	/* two z-boxes (y-rows in 2-D) with their global index0 */
	const int axis = n[2] > 1 ? 2 : 1;
	const int64_t plane = axis == 2 ? n[0] * n[1] : n[0], cut = n[axis] / 2;
	ffdp_status sb = FFDP_OK;
	for (int part = 0; part < 2 && !sb; part++) {
		ffdp_vec gv = g.d, wv = wb.d;
		const int64_t z0 = part ? cut : 0, z1 = part ? n[axis] : cut;
		for (int c = 0; c < gv.ncomp; c++)
			gv.c[c] += z0 * plane, wv.c[c] += z0 * plane;
		gv.n[axis] = wv.n[axis] = z1 - z0;
		ffdp_adam_opts ob = o;
		ob.index0 = z0 * plane;
		sb = ffdp_op_adam_moments(e->gpu, gv, wv, none, &ob, NULL, &e->err);
	}
	CHECK_OK(sb, &e->err, "  CUDA on two boxes");
	if (!sb && !sg) {
		int64_t diff = 0;
		for (int c = 0; c < w.h.ncomp; c++) {
			float *a = gp_d_get(e, w.d.c[c], w.nv), *b = gp_d_get(e, wb.d.c[c], w.nv);
			diff += memcmp(a, b, (size_t)w.nv * sizeof(float)) != 0;
			free(a), free(b);
		}
		CHECK(diff == 0, "  two boxes with their index0 store the same words as one call");
	}
	for (int c = 0; c < 3; c++)
		free(w0[c]);
	gp_vec_free(e, &g), gp_vec_free(e, &w), gp_vec_free(e, &wb);
}

static void test_warp_step(gp_env *e, const int64_t n[3], int compose, double step)
{
	gp_vec u = gp_vec_new(e, n, -1.5, 1.5), w = words_new(e, n);
	ffdp_vec none = {{NULL, NULL, NULL}, {0, 0, 0}, 0};
	ffdp_warp_step_opts o;
	memset(&o, 0, sizeof(o));
	o.adam = (ffdp_adam_opts){3, 0.9, 0.99, 1e-8, FFDP_MOMENTS_BF16, 0, NULL, NULL};
	o.step = step, o.compose = compose, o.pad = FFDP_PAD_BORDER;
	o.C[0] = 1 / 0.9, o.C[1] = 0.1, o.C[3] = -0.2, o.C[4] = 1 / 1.2, o.C[8] = n[2] > 1 ? 1 / 1.1 : 0;
	ffdp_status sc = ffdp_op_warp_step(e->cpu, u.h, w.h, none, &o, &e->err);
	CHECK_OK(sc, &e->err, "bf16 warp_step %lldx%lldx%lld %s: CPU", (long long)n[0], (long long)n[1],
		 (long long)n[2], compose ? "compose" : "add");
	float *u0[3] = {NULL, NULL, NULL}; /* u before the GPU's step */
	gp_vec out = gp_vec_new(e, n, 0, 0);
	for (int c = 0; c < u.d.ncomp; c++)
		u0[c] = gp_d_get(e, u.d.c[c], u.nv);
	ffdp_status sg = ffdp_op_warp_step(e->gpu, u.d, w.d, none, &o, &e->err);
	CHECK_OK(sg, &e->err, "  CUDA");
	if (!sc && !sg) {
		double r = gp_vec_rel(e, &u);
		CHECK(r < 1e-5, "  u agrees (rel %.2e)", r);
	}
	/* out of place from u0: the in-place bits */
	ffdp_vec src = u.d;
	for (int c = 0; c < u.d.ncomp; c++)
		src.c[c] = gp_d_dup(e, u0[c], u.nv);
	o.out = &out.d;
	ffdp_status so = ffdp_op_warp_step(e->gpu, src, w.d, none, &o, &e->err);
	CHECK_OK(so, &e->err, "  CUDA out of place");
	if (!so && !sg) {
		int64_t diff = 0;
		for (int c = 0; c < u.d.ncomp; c++) {
			float *got = gp_d_get(e, u.d.c[c], u.nv);
			diff += gp_bit_diffs(e, out.d.c[c], got, u.nv);
			free(got);
		}
		CHECK(diff == 0, "  out of place = in place bit for bit (%lld differ)", (long long)diff);
	}
	for (int c = 0; c < u.d.ncomp; c++) {
		ffdp_buf_free(e->gpu, src.c[c]);
		free(u0[c]);
	}
	gp_vec_free(e, &u), gp_vec_free(e, &w), gp_vec_free(e, &out);
}

static void test_get_put(gp_env *e)
{
	const int64_t n[3] = {37, 29, 23};
	gp_vec w = words_new(e, n), x = gp_vec_new(e, n, -3, 3);
	for (int half = 0; half < 2; half++) {
		ffdp_img wh = {w.h.c[0], {n[0], n[1], n[2]}}, wd = {w.d.c[0], {n[0], n[1], n[2]}};
		ffdp_img xh = {x.h.c[half], {n[0], n[1], n[2]}}, xd = {x.d.c[half], {n[0], n[1], n[2]}};
		ffdp_img yh = {w.h.c[1], {n[0], n[1], n[2]}}, yd = {w.d.c[1], {n[0], n[1], n[2]}};
		ffdp_status s = ffdp_op_moments_put(e->cpu, wh, half, xh, &e->err);
		s = s ? s : ffdp_op_moments_put(e->gpu, wd, half, xd, &e->err);
		s = s ? s : ffdp_op_moments_get(e->cpu, wh, half, yh, &e->err);
		s = s ? s : ffdp_op_moments_get(e->gpu, wd, half, yd, &e->err);
		CHECK_OK(s, &e->err, "moments_put and moments_get, half %d, CPU and CUDA", half);
		if (!s)
			CHECK(gp_bit_diffs(e, wd.p, wh.p, w.nv) == 0 && gp_bit_diffs(e, yd.p, yh.p, w.nv) == 0,
			      "  the same bits on both");
	}
	gp_vec_free(e, &w), gp_vec_free(e, &x);
}

/* ffdp_step_state in device memory: max_norm as the CPU's state has it,
 * the warp step scaled by it as on the CPU, a NaN gradient as fault 1;
 * nothing of it crosses to the host until asked. */
static void test_state(gp_env *e, const int64_t n[3])
{
	gp_vec g = gp_vec_new(e, n, -2, 2), w = words_new(e, n), u = gp_vec_new(e, n, -1.5, 1.5);
	ffdp_vec none = {{NULL, NULL, NULL}, {0, 0, 0}, 0};
	ffdp_step_state hs = {0, 0}, ds = {0, 0}, *dst = ffdp_buf_alloc(e->gpu, sizeof(ffdp_step_state), &e->err);
	ffdp_buf_zero(e->gpu, dst, sizeof(*dst), &e->err);
	ffdp_adam_opts oc = {2, 0.9, 0.99, 1e-8, FFDP_MOMENTS_BF16, 0, &hs, NULL}, og = oc;
	og.state = dst;
	ffdp_status s = ffdp_op_adam_moments(e->cpu, g.h, w.h, none, &oc, NULL, &e->err);
	s = s ? s : ffdp_op_adam_moments(e->gpu, g.d, w.d, none, &og, NULL, &e->err);
	s = s ? s : ffdp_buf_download(e->gpu, &ds, dst, sizeof(ds), &e->err);
	CHECK_OK(s, &e->err, "bf16 adam_moments %lldx%lldx%lld with a state: CPU, CUDA", (long long)n[0],
		 (long long)n[1], (long long)n[2]);
	if (!s)
		CHECK(fabs(ds.max_norm - hs.max_norm) <= 1e-2 * hs.max_norm && ds.fault == 0,
		      "  device state max_norm %.7g, CPU %.7g, no fault", ds.max_norm, hs.max_norm);
	ffdp_warp_step_opts wc;
	memset(&wc, 0, sizeof(wc));
	wc.adam = oc, wc.step = -1.5, wc.compose = 1, wc.pad = FFDP_PAD_BORDER;
	wc.C[0] = 1 / 0.9, wc.C[1] = 0.1, wc.C[3] = -0.2, wc.C[4] = 1 / 1.2, wc.C[8] = 1 / 1.1;
	ffdp_warp_step_opts wg = wc;
	wg.adam = og;
	/* the same words and max_norm on both (the CPU's), so that only the op differs */
	ds.max_norm = hs.max_norm;
	s = ffdp_buf_upload(e->gpu, dst, &ds, sizeof(ds), &e->err);
	for (int c = 0; c < w.h.ncomp && !s; c++)
		s = ffdp_buf_upload(e->gpu, w.d.c[c], w.h.c[c], (size_t)w.nv * sizeof(float), &e->err);
	s = s ? s : ffdp_op_warp_step(e->cpu, u.h, w.h, none, &wc, &e->err);
	s = s ? s : ffdp_op_warp_step(e->gpu, u.d, w.d, none, &wg, &e->err);
	s = s ? s : ffdp_buf_download(e->gpu, &ds, dst, sizeof(ds), &e->err);
	CHECK_OK(s, &e->err, "  warp_step scaled by the state: CPU, CUDA");
	if (!s) {
		double r = gp_vec_rel(e, &u);
		CHECK(r < 1e-5 && ds.fault == 0 && hs.fault == 0, "  u agrees (rel %.2e), no fault", r);
	}
	g.h.c[1][5] = NAN;
	ffdp_buf_upload(e->gpu, g.d.c[1], g.h.c[1], (size_t)g.nv * sizeof(float), &e->err);
	s = ffdp_op_adam_moments(e->gpu, g.d, w.d, none, &og, NULL, &e->err);
	s = s ? s : ffdp_buf_download(e->gpu, &ds, dst, sizeof(ds), &e->err);
	CHECK_OK(s, &e->err, "  CUDA adam_moments, a NaN gradient voxel");
	if (!s)
		CHECK(isnan(ds.max_norm) && ds.fault == 1, "  max_norm NaN, fault 1 (%d)", ds.fault);
	ffdp_buf_free(e->gpu, dst);
	gp_vec_free(e, &g), gp_vec_free(e, &w), gp_vec_free(e, &u);
}

int main(void)
{
	gp_env e = {NULL, NULL, tu_rng_make(1612), {0}};
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &e.cpu, &e.err), &e.err, "CPU backend");
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CUDA, 0, &e.gpu, &e.err), &e.err, "CUDA backend");
	if (!e.cpu || !e.gpu)
		return check_done();
	const int64_t a[3] = {37, 29, 23}, b[3] = {61, 53, 1}, c[3] = {96, 80, 300};
	test_moments(&e, a, 1);
	test_moments(&e, a, 7);
	test_moments(&e, b, 2);
	test_moments(&e, c, 4);
	test_warp_step(&e, a, 0, -0.8);
	test_warp_step(&e, a, 1, -0.8);
	test_warp_step(&e, b, 1, 2.0);
	test_warp_step(&e, c, 1, -2.5);
	test_get_put(&e);
	test_state(&e, a);
	test_state(&e, c);
	ffdp_backend_close(e.gpu);
	ffdp_backend_close(e.cpu);
	return check_done();
}

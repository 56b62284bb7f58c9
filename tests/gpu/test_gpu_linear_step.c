/* The linear stages' loop in device memory (ops.h: ffdp_op_linear_step,
 * ffdp_sample_args.W_dev, ffdp_sample_grad_args.gW_dev):
 *   - the step on the device against the same step on the CPU backend
 *     (host memory), affine and rigid, 2-D and 3-D, over 20 steps from
 *     random gradients: parameters, moments, W and Wq bit for bit, the
 *     fault flag alike (and raised by a W past the bounds);
 *   - the sampler reading W_dev gives the bits of the same W passed by
 *     value (fast 3-D kernels and the general 2-D ones, both pads, float
 *     and unorm16 images), and gW_dev the bits of gW;
 *   - W_dev where the fast kernels do not apply is refused.
 * Needs a GPU: built with CUDA, labelled "gpu". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "gpu_pair.h"
#include "testutil.h"

static double rnd(gp_env *e, double lo, double hi)
{
	return lo + (hi - lo) * tu_uniform(&e->rng);
}

/* A level's arguments: a fixed grid of spacing (1.2, 0.9, 1.5) and an
 * oblique moving one, as the registration sets them. */
static ffdp_linear_step_args step_args(gp_env *e, int rigid, int dim)
{
	ffdp_linear_step_args a;
	memset(&a, 0, sizeof(a));
	a.rigid = rigid, a.dim = dim, a.lr = 0.01;
	for (int k = 0; k < 3; k++)
		a.c[k] = rnd(e, 20, 60);
	a.rho = 80.0;
	const double R[9] = {0.96, -0.28, 0.0, 0.28, 0.96, 0.0, 0.0, 0.0, 1.0};
	memcpy(a.R0, R, sizeof(R));
	const double sp[3] = {1.2, 0.9, 1.5};
	for (int r = 0; r < 4; r++)
		for (int q = 0; q < 4; q++) {
			a.f_i2p[4 * r + q] = r == q ? (r < 3 ? sp[r] : 1.0) : (r < 3 && q == 3 ? rnd(e, -5, 5) : 0.0);
			a.m_p2i[4 * r + q] = r == q ? (r < 3 ? 1.0 / 1.1 : 1.0) : (r < 3 && q < 3 ? rnd(e, -0.05, 0.05) : 0.0);
		}
	for (int r = 0; r < 3; r++)
		a.m_p2i[4 * r + 3] = rnd(e, 10, 30);
	return a;
}

static double rel12(const double *a, const double *b, int n)
{
	double d = 0, m = 0;
	for (int i = 0; i < n; i++)
		d = fmax(d, fabs(a[i] - b[i])), m = fmax(m, fabs(b[i]));
	return m > 0 ? d / m : d;
}

static void test_step(gp_env *e, int rigid, int dim)
{
	ffdp_linear_step_args h = step_args(e, rigid, dim), d = h;
	double st[FFDP_LINEAR_STATE] = {0}, gw[12], dst[FFDP_LINEAR_STATE];
	ffdp_linear_w w, dw;
	if (rigid)
		st[0] = 0.05, st[1] = -0.03, st[2] = 0.02;
	else
		for (int i = 0; i < 9; i++)
			st[i] = (i % 4 == 0) + rnd(e, -0.05, 0.05);
	for (int i = rigid ? 3 : 9; i < (rigid ? 6 : 12); i++)
		st[i] = rnd(e, -0.1, 0.1);
	double *sd = ffdp_buf_alloc(e->gpu, sizeof(st), &e->err), *gd = ffdp_buf_alloc(e->gpu, sizeof(gw), &e->err);
	ffdp_linear_w *wd = ffdp_buf_alloc(e->gpu, sizeof(w), &e->err);
	ffdp_status s = ffdp_buf_upload(e->gpu, sd, st, sizeof(st), &e->err);
	h.state = st, h.gW = gw, h.w = &w;
	d.state = sd, d.gW = gd, d.w = wd;
	double worst = 0, worst_w = 0;
	int64_t dq = 0, faults = 0;
	int bits = 1;
	for (int t = 0; t < 21 && !s; t++) {
		h.step = d.step = t > 0;
		h.c1 = d.c1 = 1 - pow(FFDP_LINEAR_BETA1, t), h.c2 = d.c2 = 1 - pow(FFDP_LINEAR_BETA2, t);
		for (int i = 0; i < 12; i++)
			gw[i] = rnd(e, -1, 1) * (i % 4 == 3 ? 1.0 : 40.0);
		s = ffdp_buf_upload(e->gpu, gd, gw, sizeof(gw), &e->err);
		s = s ? s : ffdp_op_linear_step(e->cpu, &h, &e->err);
		s = s ? s : ffdp_op_linear_step(e->gpu, &d, &e->err);
		s = s ? s : ffdp_buf_download(e->gpu, dst, sd, sizeof(dst), &e->err);
		s = s ? s : ffdp_buf_download(e->gpu, &dw, wd, sizeof(dw), &e->err);
		if (s)
			break;
		worst = fmax(worst, fmax(rel12(dst, st, 12), fmax(rel12(dst + 12, st + 12, 24), fabs(dst[36] - st[36]))));
		worst_w = fmax(worst_w, rel12(dw.W, w.W, 12));
		for (int i = 0; i < 12; i++)
			dq = dq > llabs(dw.Wq[i] - w.Wq[i]) ? dq : llabs(dw.Wq[i] - w.Wq[i]);
		faults += (dw.fault != w.fault) + w.fault;
		bits &= !memcmp(dst, st, sizeof(st)) && !memcmp(&dw, &w, sizeof(w));
	}
	CHECK_OK(s, &e->err, "linear_step %s %d-D: 21 steps on both backends", rigid ? "rigid" : "affine", dim);
	/* the same bits: a registration on one GPU = on one MPI rank (whose
	 * loop steps on the host) */
	CHECK(bits && faults == 0 && st[36] == 20.0,
	      "  CUDA = CPU bit for bit (state %.1e, W %.1e, Wq within %lld), no fault, count %.0f", worst, worst_w,
	      (long long)dq, st[36]);
	/* a translation past 2^28 voxels: fault on both */
	h.step = d.step = 0;
	h.m_p2i[3] = d.m_p2i[3] = 0x1p29;
	s = ffdp_op_linear_step(e->cpu, &h, &e->err);
	s = s ? s : ffdp_op_linear_step(e->gpu, &d, &e->err);
	s = s ? s : ffdp_buf_download(e->gpu, &dw, wd, sizeof(dw), &e->err);
	CHECK(!s && w.fault == 1 && dw.fault == 1, "  a W past the fixed-point bounds faults on both");
	ffdp_buf_free(e->gpu, sd), ffdp_buf_free(e->gpu, gd), ffdp_buf_free(e->gpu, wd);
}

/* The sampler and its gW with W_dev against W by value, on the device:
 * the fast kernels (3-D) or the general ones (2-D). */
static void test_sampler(gp_env *e, int pad, int u16, int flat)
{
	const int64_t mn[3] = {45, 53, flat ? 1 : 37}, on[3] = {41, 47, flat ? 1 : 33}, mv = mn[0] * mn[1] * mn[2],
		      ov = on[0] * on[1] * on[2];
	float *hm = gp_h_new(mv), *hg = gp_h_new(ov);
	tu_fill_smooth(&e->rng, hm, mn, 0.05);
	for (int64_t i = 0; i < mv; i++)
		hm[i] = 0.5f + 0.4f * hm[i];
	tu_fill_uniform(&e->rng, hg, ov, -1, 1);
	float *dm = gp_d_dup(e, hm, mv), *dg = gp_d_dup(e, hg, ov), *o1 = gp_d_dup(e, hg, ov), *o2 = gp_d_dup(e, hg, ov);
	uint16_t *dq = NULL;
	if (u16) {
		dq = ffdp_buf_alloc(e->gpu, (size_t)mv * sizeof(uint16_t), &e->err);
		ffdp_op_unorm16_pack(e->gpu, (ffdp_img){dm, {mn[0], mn[1], mn[2]}}, dq, &e->err);
	}
	/* W from a step: an oblique map that crosses the moving box's faces */
	ffdp_linear_step_args a = step_args(e, 0, 3);
	for (int r = 0; r < 3; r++) /* unit fixed voxels, the map mostly inside the moving box */
		a.f_i2p[5 * r] = 1.0, a.f_i2p[4 * r + 3] = 0.0, a.m_p2i[4 * r + 3] = rnd(e, -3, 3);
	double st[FFDP_LINEAR_STATE] = {0.97, 0.06, -0.03, -0.05, 1.02, 0.04, 0.02, -0.03, 0.95, 0.02, -0.03, 0.01};
	if (flat) { /* z kept in the plane: p_z = 0 */
		st[2] = st[5] = st[6] = st[7] = st[11] = 0.0, st[8] = 1.0;
		a.c[2] = 0.0;
		for (int q = 0; q < 4; q++)
			a.m_p2i[8 + q] = a.f_i2p[8 + q] = q == 2 ? 1.0 : 0.0;
		for (int r = 0; r < 2; r++)
			a.m_p2i[4 * r + 2] = a.f_i2p[4 * r + 2] = 0.0;
	}
	ffdp_linear_w w;
	double *sd = ffdp_buf_alloc(e->gpu, sizeof(st), &e->err), *gd = ffdp_buf_alloc(e->gpu, 12 * sizeof(double), &e->err);
	ffdp_linear_w *wd = ffdp_buf_alloc(e->gpu, sizeof(w), &e->err);
	ffdp_buf_upload(e->gpu, sd, st, sizeof(st), &e->err);
	a.state = sd, a.w = wd, a.gW = gd;
	ffdp_status s = ffdp_op_linear_step(e->gpu, &a, &e->err);
	s = s ? s : ffdp_buf_download(e->gpu, &w, wd, sizeof(w), &e->err);
	ffdp_sample_args sa;
	memset(&sa, 0, sizeof(sa));
	sa.moving = (ffdp_img){u16 ? NULL : dm, {mn[0], mn[1], mn[2]}};
	sa.moving16 = dq;
	sa.out = (ffdp_img){o1, {on[0], on[1], on[2]}};
	sa.pad = pad ? FFDP_PAD_BORDER : FFDP_PAD_ZERO;
	memcpy(sa.W, w.W, sizeof(sa.W));
	ffdp_sample_args sb = sa;
	memset(sb.W, 0, sizeof(sb.W));
	sb.W_dev = wd, sb.out.p = o2;
	double gw[12] = {0}, gwd[12];
	ffdp_sample_grad_args ga = {&sa, {dg, {on[0], on[1], on[2]}}, NULL, 0, gw, NULL, NULL, NULL};
	ffdp_sample_grad_args gb = {&sb, {dg, {on[0], on[1], on[2]}}, NULL, 0, NULL, NULL, NULL, gd};
	s = s ? s : ffdp_op_sample(e->gpu, &sa, &e->err);
	s = s ? s : ffdp_op_sample(e->gpu, &sb, &e->err);
	s = s ? s : ffdp_op_sample_grad(e->gpu, &ga, &e->err);
	s = s ? s : ffdp_op_sample_grad(e->gpu, &gb, &e->err);
	s = s ? s : ffdp_buf_download(e->gpu, gwd, gd, sizeof(gwd), &e->err);
	CHECK_OK(s, &e->err, "sampler with W_dev (%s, %s pad%s)", flat ? "2-D" : "3-D", pad ? "border" : "zero",
		 u16 ? ", unorm16" : "");
	if (!s) {
		float *h1 = gp_d_get(e, o1, ov);
		int64_t inside = 0;
		for (int64_t i = 0; i < ov; i++)
			inside += h1[i] != 0.0f;
		CHECK(gp_bit_diffs(e, o2, h1, ov) == 0 && !memcmp(gw, gwd, sizeof(gw)) && inside > ov / 2,
		      "  W_dev = W by value: forward bits (%lld of %lld voxels sampled non-zero), gW_dev = gW bits",
		      (long long)inside, (long long)ov);
		free(h1);
	}
	/* refused where the fast kernels do not apply: accumulation */
	sb.accumulate = 1;
	CHECK(ffdp_op_sample(e->gpu, &sb, &e->err) != FFDP_OK, "  W_dev with accumulate is refused: %s", e->err.msg);
	free(hm), free(hg);
	ffdp_buf_free(e->gpu, dm), ffdp_buf_free(e->gpu, dg), ffdp_buf_free(e->gpu, o1), ffdp_buf_free(e->gpu, o2);
	ffdp_buf_free(e->gpu, dq), ffdp_buf_free(e->gpu, sd), ffdp_buf_free(e->gpu, gd), ffdp_buf_free(e->gpu, wd);
}

int main(void)
{
	gp_env e = {NULL, NULL, tu_rng_make(2411), {0}};
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &e.cpu, &e.err), &e.err, "CPU backend");
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CUDA, 0, &e.gpu, &e.err), &e.err, "CUDA backend");
	if (!e.cpu || !e.gpu)
		return check_done();
	for (int rigid = 0; rigid < 2; rigid++)
		for (int dim = 2; dim <= 3; dim++)
			test_step(&e, rigid, dim);
	for (int pad = 0; pad < 2; pad++)
		for (int u16 = 0; u16 < 2; u16++)
			for (int flat = 0; flat < 2; flat++)
				test_sampler(&e, pad, u16, flat);
	ffdp_backend_close(e.gpu);
	ffdp_backend_close(e.cpu);
	return check_done();
}

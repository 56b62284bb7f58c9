/* CUDA op benchmark: per op and cube edge n, the median of 10 CUDA-event
 * timings after 3 warm-ups, the op's floor (fewest bytes: each input read
 * once, each output written once) in ms at the H100 reference copy
 * bandwidth (2.96 TB/s, anchors.md) and at this device's own measured
 * device-to-device copy bandwidth, time / floor, the FFDP anchor where one
 * exists (anchors.md, H100) and anchor / ours, and the op's peak extra
 * device memory (the high-water mark of the stream-ordered pool that op
 * scratch comes from, plus any cudaMalloc growth seen by cudaMemGetInfo).
 *
 * usage: bench_ops_gpu [N ...]   (default: 128 256 512; each op runs at the
 * sizes listed for it that are among N)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "ffdp/ffdp.h"

#define REF_BW 2.96e12 /* B/s, H100 device-to-device copy (anchors.md) */
#define WARMUP 3
#define RUNS 10

typedef struct bench {
	ffdp_backend *be;
	int64_t n, nv;
	float *M, *F, *out, *g, *gM;      /* scalar volumes */
	float *u[3], *d[3], *o[3], *m[3], *v[3], *gu[3];
	float *w[3]; /* m and v as bf16 words (FFDP_MOMENTS_BF16) */
	double gW[12];
	int f16; /* gM holds F as unorm16 (packed on the first use at a size) */
	ffdp_error err;
} bench;

typedef ffdp_status (*bench_fn)(bench *b);

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_ops_gpu: %s: %s\n", what, msg);
	exit(1);
}

static void cu(cudaError_t e, const char *what)
{
	if (e != cudaSuccess)
		die(what, cudaGetErrorString(e));
}

/* ---- data ------------------------------------------------------------------------ */

static void fill(float *x, int64_t n, uint32_t seed, float lo, float hi)
{
	for (int64_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		x[i] = lo + (hi - lo) * (float)(seed >> 8) * (1.0f / 16777216.0f);
	}
}

static float *dev(bench *b, const float *host)
{
	size_t bytes = (size_t)b->nv * sizeof(float);
	float *p = ffdp_buf_alloc(b->be, bytes, &b->err);
	if (!p || (host && ffdp_buf_upload(b->be, p, host, bytes, &b->err)))
		die("device buffer", b->err.msg);
	return p;
}

/* Every buffer any op needs, at edge n: 4 + 6 + 3 x 6 volumes. */
static void bench_setup(bench *b, int64_t n)
{
	b->n = n;
	b->nv = n * n * n;
	b->f16 = 0;
	float *img = malloc((size_t)b->nv * sizeof(float)), *fld = malloc((size_t)b->nv * sizeof(float));
	float *pos = malloc((size_t)b->nv * sizeof(float));
	if (!img || !fld || !pos)
		die("host buffers", "out of memory");
	fill(img, b->nv, 1, 0.0f, 1.0f);
	fill(fld, b->nv, 2, -2.0f, 2.0f); /* displacements, mm */
	fill(pos, b->nv, 3, 0.5f, 1.0f);  /* second moments */
	b->M = dev(b, img), b->F = dev(b, img), b->out = dev(b, NULL), b->g = dev(b, fld), b->gM = dev(b, NULL);
	for (int c = 0; c < 3; c++) {
		b->u[c] = dev(b, fld), b->d[c] = dev(b, fld), b->o[c] = dev(b, NULL);
		b->m[c] = dev(b, fld), b->v[c] = dev(b, pos), b->gu[c] = dev(b, NULL);
		b->w[c] = dev(b, NULL);
		ffdp_img w = {b->w[c], {n, n, n}}, m = {b->m[c], {n, n, n}}, v = {b->v[c], {n, n, n}};
		if (ffdp_op_moments_put(b->be, w, 0, m, &b->err) || ffdp_op_moments_put(b->be, w, 1, v, &b->err))
			die("bf16 words", b->err.msg);
	}
	free(img), free(fld), free(pos);
}

static void bench_free(bench *b)
{
	ffdp_buf_free(b->be, b->M), ffdp_buf_free(b->be, b->F), ffdp_buf_free(b->be, b->out);
	ffdp_buf_free(b->be, b->g), ffdp_buf_free(b->be, b->gM);
	for (int c = 0; c < 3; c++) {
		ffdp_buf_free(b->be, b->u[c]), ffdp_buf_free(b->be, b->d[c]), ffdp_buf_free(b->be, b->o[c]);
		ffdp_buf_free(b->be, b->m[c]), ffdp_buf_free(b->be, b->v[c]), ffdp_buf_free(b->be, b->gu[c]);
		ffdp_buf_free(b->be, b->w[c]);
	}
}

static ffdp_img img(bench *b, float *p)
{
	ffdp_img x = {p, {b->n, b->n, b->n}};
	return x;
}

static ffdp_vec vec(bench *b, float **c)
{
	ffdp_vec x = {{c[0], c[1], c[2]}, {b->n, b->n, b->n}, 3};
	return x;
}

/* ---- ops -------------------------------------------------------------------------- */

/* An oblique, near-identity W (rotation of a few degrees, 3 % scaling) and B. */
static ffdp_sample_args sample_args(bench *b, const ffdp_vec *u)
{
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	const double W[12] = {1.02, 0.03, -0.02, 0.7, -0.03, 0.99, 0.04, -1.3, 0.02, -0.04, 1.01, 0.4};
	const double B[9] = {0.95, 0.05, 0.0, -0.05, 1.05, 0.02, 0.01, -0.02, 0.9};
	memcpy(a.W, W, sizeof(W));
	memcpy(a.B, B, sizeof(B));
	a.moving = img(b, b->M);
	a.out = img(b, b->out);
	a.u = u;
	a.interp = FFDP_INTERP_LINEAR;
	a.pad = FFDP_PAD_ZERO;
	return a;
}

static ffdp_status op_sample_affine(bench *b)
{
	ffdp_sample_args a = sample_args(b, NULL);
	return ffdp_op_sample(b->be, &a, &b->err);
}

static ffdp_status op_sample_u(bench *b)
{
	ffdp_vec u = vec(b, b->u);
	ffdp_sample_args a = sample_args(b, &u);
	return ffdp_op_sample(b->be, &a, &b->err);
}

static ffdp_status op_sample_fwd_bwd_u(bench *b)
{
	ffdp_vec u = vec(b, b->u), gu = vec(b, b->gu);
	ffdp_sample_args a = sample_args(b, &u);
	ffdp_status s = ffdp_op_sample(b->be, &a, &b->err);
	ffdp_sample_grad_args g = {.fwd = &a, .gout = img(b, b->g), .gu = &gu};
	return s ? s : ffdp_op_sample_grad(b->be, &g, &b->err);
}

static ffdp_status op_sample_bwd_W_M(bench *b)
{
	ffdp_sample_args a = sample_args(b, NULL);
	ffdp_img gM = img(b, b->gM);
	ffdp_sample_grad_args g = {.fwd = &a, .gout = img(b, b->g), .gW = b->gW, .gM = &gM};
	return ffdp_op_sample_grad(b->be, &g, &b->err);
}

/* the affine stage's backward: gW alone, no u */
static ffdp_status op_sample_bwd_W(bench *b)
{
	ffdp_sample_args a = sample_args(b, NULL);
	ffdp_sample_grad_args g = {.fwd = &a, .gout = img(b, b->g), .gW = b->gW};
	return ffdp_op_sample_grad(b->be, &g, &b->err);
}

static ffdp_status op_label(bench *b)
{
	ffdp_vec u = vec(b, b->u);
	ffdp_sample_args a = sample_args(b, &u);
	a.interp = FFDP_INTERP_LABEL;
	return ffdp_op_sample(b->be, &a, &b->err);
}

static const double C_OBLIQUE[9] = {0.9, 0.1, -0.05, -0.1, 1.1, 0.02, 0.05, -0.02, 0.95};

static ffdp_status op_invert(bench *b)
{
	ffdp_invert_args a;
	double resid;
	memset(&a, 0, sizeof(a));
	a.w = vec(b, b->u), a.v = vec(b, b->d), a.out = vec(b, b->o);
	memcpy(a.C, C_OBLIQUE, sizeof(a.C));
	return ffdp_op_invert_step(b->be, &a, &resid, &b->err);
}

static ffdp_status op_compose(bench *b)
{
	ffdp_compose_args a;
	memset(&a, 0, sizeof(a));
	a.u = vec(b, b->u), a.d = vec(b, b->d), a.out = vec(b, b->o);
	memcpy(a.C, C_OBLIQUE, sizeof(a.C));
	a.pad = FFDP_PAD_ZERO;
	return ffdp_op_compose(b->be, &a, &b->err);
}

static ffdp_status op_jacobian(bench *b)
{
	const double A[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
	ffdp_vec u = vec(b, b->u);
	return ffdp_op_jacobian_det(b->be, &u, A, C_OBLIQUE, img(b, b->out), &b->err);
}

static ffdp_status op_moments(bench *b)
{
	double mo[10];
	return ffdp_op_moments(b->be, img(b, b->M), mo, &b->err);
}

static ffdp_loss_args loss_args(bench *b, double *loss)
{
	ffdp_loss_args a;
	memset(&a, 0, sizeof(a));
	a.f = img(b, b->F), a.m = img(b, b->M), a.scale = 1.0, a.gm = b->out, a.loss = loss;
	return a;
}

static ffdp_status op_mse(bench *b)
{
	double loss;
	ffdp_loss_args a = loss_args(b, &loss);
	return ffdp_op_mse(b->be, &a, &b->err);
}

static ffdp_status op_lncc(bench *b)
{
	double loss;
	ffdp_loss_args a = loss_args(b, &loss);
	ffdp_lncc_opts o = {.k = 7, .exact_grad = 1, .eps = 0};
	return ffdp_op_lncc(b->be, &a, &o, &b->err);
}

/* registration's window (k = 5), f as float and as unorm16 (greedy's call
 * with 16-bit images: the same kernel, f read as unorm16) */
static ffdp_status op_lncc5(bench *b)
{
	double loss;
	ffdp_loss_args a = loss_args(b, &loss);
	ffdp_lncc_opts o = {.k = 5, .exact_grad = 1, .eps = 0};
	return ffdp_op_lncc(b->be, &a, &o, &b->err);
}

static ffdp_status op_lncc5_f16(bench *b)
{
	double loss;
	ffdp_loss_args a = loss_args(b, &loss);
	ffdp_lncc_opts o = {.k = 5, .exact_grad = 1, .eps = 0};
	ffdp_status s;
	if (!b->f16 && (s = ffdp_op_unorm16_pack(b->be, a.f, (uint16_t *)b->gM, &b->err)))
		return s;
	b->f16 = 1;
	a.f16 = (const uint16_t *)b->w[2], a.f.p = NULL;
	return ffdp_op_lncc(b->be, &a, &o, &b->err);
}

static ffdp_status op_mi(bench *b)
{
	double loss;
	ffdp_loss_args a = loss_args(b, &loss);
	ffdp_mi_opts o = {32, FFDP_MI_GAUSSIAN, 0, 1, 0, 1, NULL, NULL, NULL, 0};
	return ffdp_op_mi(b->be, &a, &o, &b->err);
}

static ffdp_status op_smooth(bench *b)
{
	ffdp_smooth_opts o = {{1, 1, 1}, 0, 1};
	return ffdp_op_smooth(b->be, img(b, b->out), &o, &b->err);
}

static ffdp_status op_smooth_vec(bench *b)
{
	ffdp_smooth_opts o = {{1, 1, 1}, 0, 0};
	return ffdp_op_smooth_vec(b->be, vec(b, b->gu), &o, &b->err);
}

/* registration's warp smoothing (sigma 0.5: radius 1), in place and out of place */
static ffdp_status op_smooth_vec_half(bench *b)
{
	ffdp_smooth_opts o = {{0.5, 0.5, 0.5}, 2.0, 0};
	return ffdp_op_smooth_vec(b->be, vec(b, b->gu), &o, &b->err);
}

static ffdp_status op_smooth_vec_half_to(bench *b)
{
	ffdp_smooth_opts o = {{0.5, 0.5, 0.5}, 2.0, 0};
	return ffdp_op_smooth_vec_to(b->be, vec(b, b->gu), vec(b, b->o), &o, &b->err);
}

static ffdp_status op_smooth_vec_to(bench *b)
{
	ffdp_smooth_opts o = {{1, 1, 1}, 0, 0};
	return ffdp_op_smooth_vec_to(b->be, vec(b, b->gu), vec(b, b->o), &o, &b->err);
}

static ffdp_status op_adam_moments(bench *b)
{
	ffdp_adam_opts o = {5, 0.9, 0.999, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL};
	double mn;
	ffdp_vec g = vec(b, b->d); /* any field as the gradient */
	return ffdp_op_adam_moments(b->be, g, vec(b, b->m), vec(b, b->v), &o, &mn, &b->err);
}

static ffdp_status op_adam_moments16(bench *b)
{
	ffdp_adam_opts o = {5, 0.9, 0.999, 1e-8, FFDP_MOMENTS_BF16, 0, NULL, NULL};
	double mn;
	return ffdp_op_adam_moments(b->be, vec(b, b->d), vec(b, b->w), vec(b, b->w), &o, &mn, &b->err);
}

/* registration's gradient smoothing (sigma 1.5: radius 3) in place, and
 * fused into the bf16 moments (g only read: 12 + 24 B/voxel) */
static ffdp_status op_smooth_vec_grad(bench *b)
{
	ffdp_smooth_opts o = {{1.5, 1.5, 1.5}, 2.0, 0};
	return ffdp_op_smooth_vec(b->be, vec(b, b->gu), &o, &b->err);
}

static ffdp_status op_adam_moments16_smooth(bench *b)
{
	ffdp_smooth_opts so = {{1.5, 1.5, 1.5}, 2.0, 0};
	ffdp_adam_opts o = {5, 0.9, 0.999, 1e-8, FFDP_MOMENTS_BF16, 0, NULL, &so};
	double mn;
	return ffdp_op_adam_moments(b->be, vec(b, b->d), vec(b, b->w), vec(b, b->w), &o, &mn, &b->err);
}

/* out: the new u into b->o (no ring), else in place */
static ffdp_status warp_step(bench *b, int compose, ffdp_moment_store ms, int out)
{
	ffdp_warp_step_opts o;
	memset(&o, 0, sizeof(o)); /* a max_norm hint, where ops.h has one: 0 = measure */
	o.adam.t = 5, o.adam.beta1 = 0.9, o.adam.beta2 = 0.999, o.adam.eps = 1e-8, o.adam.store = ms;
	o.step = -0.25, o.compose = compose, o.pad = FFDP_PAD_ZERO;
	memcpy(o.C, C_OBLIQUE, sizeof(o.C));
	float **m = ms == FFDP_MOMENTS_BF16 ? b->w : b->m, **v = ms == FFDP_MOMENTS_BF16 ? b->w : b->v;
	const ffdp_vec ov = vec(b, b->o);
	o.out = out ? &ov : NULL;
	return ffdp_op_warp_step(b->be, vec(b, b->u), vec(b, m), vec(b, v), &o, &b->err);
}

static ffdp_status op_warp_compose16(bench *b)
{
	return warp_step(b, 1, FFDP_MOMENTS_BF16, 0);
}

static ffdp_status op_warp_compose16_out(bench *b)
{
	return warp_step(b, 1, FFDP_MOMENTS_BF16, 1);
}

static ffdp_status op_warp_add(bench *b)
{
	return warp_step(b, 0, FFDP_MOMENTS_F32, 0);
}

static ffdp_status op_warp_compose(bench *b)
{
	return warp_step(b, 1, FFDP_MOMENTS_F32, 0);
}

/* ---- timing ------------------------------------------------------------------------- */

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* Median ms of RUNS after WARMUP; *peak: extra device bytes at the op's peak. */
static double time_op(bench *b, bench_fn fn, double *peak)
{
	cudaMemPool_t pool;
	int dev = 0;
	cu(cudaGetDevice(&dev), "device");
	cu(cudaDeviceGetDefaultMemPool(&pool, dev), "memory pool");
	for (int i = 0; i < WARMUP; i++)
		if (fn(b) != FFDP_OK)
			return NAN;
	cu(cudaDeviceSynchronize(), "warm-up");
	uint64_t zero = 0, high = 0;
	cu(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero), "pool reset");
	size_t free0, free1, total;
	cu(cudaMemGetInfo(&free0, &total), "memory info");
	cudaEvent_t e0, e1;
	cu(cudaEventCreate(&e0), "event"), cu(cudaEventCreate(&e1), "event");
	float ms[RUNS];
	for (int i = 0; i < RUNS; i++) {
		cu(cudaEventRecord(e0, 0), "event");
		if (fn(b) != FFDP_OK)
			return NAN;
		cu(cudaEventRecord(e1, 0), "event");
		cu(cudaEventSynchronize(e1), "run");
		cu(cudaEventElapsedTime(&ms[i], e0, e1), "event");
	}
	cu(cudaMemGetInfo(&free1, &total), "memory info");
	cu(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high), "pool high");
	cudaEventDestroy(e0), cudaEventDestroy(e1);
	*peak = (double)high + (free0 > free1 ? (double)(free0 - free1) : 0.0);
	qsort(ms, RUNS, sizeof(float), cmp_float);
	return 0.5 * (ms[RUNS / 2 - 1] + ms[RUNS / 2]);
}

/* Device-to-device copy bandwidth (bytes read + written per second) of a
 * 1 GiB buffer: cudaMemcpy on one device runs the driver's copy kernel. */
static double copy_bandwidth(void)
{
	size_t bytes = (size_t)1 << 30;
	void *a, *c;
	cu(cudaMalloc(&a, bytes), "copy buffer"), cu(cudaMalloc(&c, bytes), "copy buffer");
	cu(cudaMemset(a, 1, bytes), "copy buffer");
	cudaEvent_t e0, e1;
	cu(cudaEventCreate(&e0), "event"), cu(cudaEventCreate(&e1), "event");
	float ms[RUNS];
	for (int i = -WARMUP; i < RUNS; i++) {
		cu(cudaEventRecord(e0, 0), "event");
		cu(cudaMemcpyAsync(c, a, bytes, cudaMemcpyDeviceToDevice, 0), "copy");
		cu(cudaEventRecord(e1, 0), "event");
		cu(cudaEventSynchronize(e1), "copy");
		if (i >= 0)
			cu(cudaEventElapsedTime(&ms[i], e0, e1), "event");
	}
	cudaEventDestroy(e0), cudaEventDestroy(e1);
	cudaFree(a), cudaFree(c);
	qsort(ms, RUNS, sizeof(float), cmp_float);
	return 2.0 * (double)bytes / (0.5e-3 * (ms[RUNS / 2 - 1] + ms[RUNS / 2]));
}

/* ---- table -------------------------------------------------------------------------- */

typedef struct op_def {
	const char *name;
	int sizes[3];    /* edges this op runs at (0 = unused) */
	double bpv;      /* floor bytes per voxel */
	int anchor_n;    /* size of the FFDP anchor (0: none) */
	double anchor;   /* its time, ms (H100) */
	bench_fn fn;
} op_def;

/* Floors: docs/perf.md; the moving image counts once per output voxel. */
static const op_def OPS[] = {
	{"sample fwd, affine", {256, 512, 0}, 8, 0, 0, op_sample_affine},
	{"sample fwd, +u", {256, 512, 0}, 20, 256, 0.61, op_sample_u},
	{"sample fwd+bwd to u", {128, 256, 0}, 52, 128, 0.86, op_sample_fwd_bwd_u},
	{"sample bwd to W, M", {256, 0, 0}, 16, 0, 0, op_sample_bwd_W_M},
	{"sample bwd to W", {256, 512, 0}, 8, 0, 0, op_sample_bwd_W},
	{"sample label, +u", {256, 0, 0}, 20, 0, 0, op_label},
	{"compose", {256, 512, 0}, 36, 512, 23.3, op_compose},
	{"invert step", {256, 0, 0}, 36, 0, 0, op_invert},
	{"jacobian det", {256, 0, 0}, 16, 0, 0, op_jacobian},
	{"moments", {256, 0, 0}, 4, 0, 0, op_moments},
	{"mse fwd+bwd", {256, 0, 0}, 12, 0, 0, op_mse},
	{"lncc k7 exact fwd+bwd", {256, 0, 0}, 12, 256, 9.53, op_lncc},
	{"lncc k5 exact fwd+bwd", {256, 512, 0}, 12, 0, 0, op_lncc5},
	{"lncc k5 exact, f unorm16", {256, 512, 0}, 10, 0, 0, op_lncc5_f16},
	{"mi 32 fwd+bwd", {256, 0, 0}, 12, 256, 51.3, op_mi},
	{"smooth scalar s=1", {256, 0, 0}, 8, 0, 0, op_smooth},
	{"smooth vec s=1", {256, 0, 0}, 24, 0, 0, op_smooth_vec},
	{"smooth vec s=1 to", {256, 0, 0}, 24, 0, 0, op_smooth_vec_to},
	{"smooth vec s=.5", {256, 0, 0}, 24, 0, 0, op_smooth_vec_half},
	{"smooth vec s=.5 to", {256, 512, 0}, 24, 0, 0, op_smooth_vec_half_to},
	{"adam moments", {256, 0, 0}, 60, 0, 0, op_adam_moments},
	{"warp step add", {256, 0, 0}, 48, 0, 0, op_warp_add},
	{"warp step compose", {256, 0, 0}, 48, 0, 0, op_warp_compose},
	{"adam moments bf16", {256, 0, 0}, 36, 0, 0, op_adam_moments16},
	{"smooth vec s=1.5", {256, 0, 0}, 24, 0, 0, op_smooth_vec_grad},
	{"adam bf16 of g s=1.5", {256, 512, 0}, 36, 0, 0, op_adam_moments16_smooth},
	{"warp compose bf16", {256, 0, 0}, 36, 0, 0, op_warp_compose16},
	{"warp compose bf16 out", {256, 512, 0}, 36, 0, 0, op_warp_compose16_out}, /* u 12 + words 12 + out 12 */
};

static int runs_at(const op_def *op, int n)
{
	for (int k = 0; k < 3; k++)
		if (op->sizes[k] == n)
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	int sizes[8] = {128, 256, 512}, ns = 3;
	if (argc > 1) {
		ns = 0;
		for (int i = 1; i < argc && ns < 8; i++)
			sizes[ns++] = atoi(argv[i]);
	}
	bench b;
	memset(&b, 0, sizeof(b));
	if (ffdp_backend_open(FFDP_BACKEND_CUDA, 0, &b.be, &b.err))
		die("CUDA backend", b.err.msg);
	struct cudaDeviceProp prop;
	cu(cudaGetDeviceProperties(&prop, 0), "device properties");
	const double bw = copy_bandwidth();
	printf("device: %s, %d SMs, %.1f GiB; measured D2D copy %.2f TB/s (reference %.2f TB/s)\n", prop.name,
	       prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30), bw / 1e12, REF_BW / 1e12);
	printf("%-24s %5s %9s %9s %9s %9s %8s %9s %8s %9s\n", "op", "n", "ms", "floor MB", "fl@2.96", "fl@meas",
	       "t/floor", "FFDP ms", "FFDP/us", "peak MiB");
	const int nops = (int)(sizeof(OPS) / sizeof(OPS[0]));
	for (int si = 0; si < ns; si++) {
		int any = 0;
		for (int k = 0; k < nops; k++)
			any |= runs_at(&OPS[k], sizes[si]);
		if (!any)
			continue;
		bench_setup(&b, sizes[si]);
		for (int k = 0; k < nops; k++) {
			const op_def *op = &OPS[k];
			if (!runs_at(op, sizes[si]))
				continue;
			double peak = 0, t = time_op(&b, op->fn, &peak);
			double bytes = op->bpv * (double)b.nv, f_ref = bytes / REF_BW * 1e3, f_meas = bytes / bw * 1e3;
			if (isnan(t)) {
				printf("%-24s %5d   failed: %s\n", op->name, sizes[si], b.err.msg);
				continue;
			}
			char anc[32] = "-", ratio[32] = "-";
			if (op->anchor_n == sizes[si]) {
				snprintf(anc, sizeof(anc), "%.2f", op->anchor);
				snprintf(ratio, sizeof(ratio), "%.2f", op->anchor / t);
			}
			printf("%-24s %5d %9.3f %9.1f %9.3f %9.3f %8.2f %9s %8s %9.1f\n", op->name, sizes[si], t, bytes / 1e6,
			       f_ref, f_meas, t / f_meas, anc, ratio, peak / (1 << 20));
			fflush(stdout);
		}
		bench_free(&b);
	}
	ffdp_backend_close(b.be);
	return 0;
}

/* CPU op benchmark: per op and size, time, the bytes its floor must move,
 * effective GB/s, time / floor (floor = bytes / the best copy bandwidth
 * measured during the run, copy_sample), and the 1 -> 2 thread speed-up.
 * The table is printed at the end, once that rate is known.
 *
 * usage: bench_ops_cpu [N ...] [OP ...]   (cube edges, default 128 192; OP: only
 * the ops whose names contain one of these words, e.g. "compose" "warp")
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffdp/ffdp.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static void set_threads(int t)
{
#ifdef _OPENMP
	omp_set_num_threads(t);
#else
	(void)t;
#endif
}

static int max_threads(void)
{
	return ffdp_num_threads();
}

/* Copy bandwidth (bytes read + written per second), best of 5, on a buffer
 * far larger than the caches. */
/* The copy that sets the floor.  This machine shares its memory system:
 * the same copy ran at 31-63 GB/s within a minute (2026-11-25), so it is
 * sampled before every op and the floor uses the best rate seen in the
 * whole run (the memory system's own), not one sample taken at start. */
typedef struct copy_probe {
	float *a, *b;
	size_t n;
	double best, worst;
} copy_probe;

static void copy_sample(copy_probe *cp, int reps)
{
	for (int rep = 0; rep < reps; rep++) {
		float *a = cp->a, *b = cp->b;
		double t0 = ffdp_now();
#pragma omp parallel for schedule(static)
		for (int64_t i = 0; i < (int64_t)cp->n; i++)
			b[i] = a[i] + 1.0f;
		double bw = 2.0 * (double)cp->n * sizeof(float) / (ffdp_now() - t0);
		cp->best = fmax(cp->best, bw), cp->worst = fmin(cp->worst, bw);
		cp->a = b, cp->b = a;
	}
}

static void copy_open(copy_probe *cp)
{
	cp->n = (size_t)64 << 20; /* floats: 256 MiB each way */
	cp->a = ffdp_alloc(cp->n * sizeof(float), NULL), cp->b = ffdp_alloc(cp->n * sizeof(float), NULL);
	if (!cp->a || !cp->b) {
		fprintf(stderr, "bench: cannot allocate the copy buffers\n");
		exit(1);
	}
	memset(cp->a, 0, cp->n * sizeof(float));
	memset(cp->b, 0, cp->n * sizeof(float));
	cp->best = 0.0, cp->worst = 1e300;
	copy_sample(cp, 5);
}

typedef struct bench_state {
	ffdp_backend *be;
	int64_t n[3];
	int64_t nvox;
	float *f, *m, *g;        /* scalar volumes */
	float *u[3], *d[3], *gu[3], *mm[3], *vv[3], *out[3];
	float *ww[3];      /* mm and vv as bf16 words (FFDP_MOMENTS_BF16) */
	double max_norm;   /* of the Adam step in mm, vv (set up once) */
	double max_norm16; /* the same in ww */
	ffdp_img F, M, G;
} bench_state;

typedef ffdp_status (*bench_fn)(bench_state *s, ffdp_error *err);

static ffdp_vec vec_of(bench_state *s, float **c)
{
	ffdp_vec v = {{c[0], c[1], c[2]}, {s->n[0], s->n[1], s->n[2]}, 3};
	return v;
}

static void fill(float *x, int64_t n, unsigned seed, float lo, float hi)
{
	for (int64_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		x[i] = lo + (hi - lo) * (float)(seed >> 8) / 16777216.0f;
	}
}

static ffdp_sample_args sample_args(bench_state *s, const ffdp_vec *u)
{
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	a.moving = s->M;
	/* a small rotation-like affine so the access pattern is realistic */
	double W[12] = {0.998, 0.05, 0.0, 1.3, -0.05, 0.998, 0.01, -0.7, 0.0, -0.01, 1.0, 0.4};
	memcpy(a.W, W, sizeof(W));
	double B[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
	memcpy(a.B, B, sizeof(B));
	a.u = u;
	a.out = s->G;
	return a;
}

static ffdp_status b_sample(bench_state *s, ffdp_error *err)
{
	ffdp_vec u = vec_of(s, s->u);
	ffdp_sample_args a = sample_args(s, &u);
	return ffdp_op_sample(s->be, &a, err);
}

static ffdp_status b_sample_grad(bench_state *s, ffdp_error *err)
{
	ffdp_vec u = vec_of(s, s->u), gu = vec_of(s, s->gu);
	ffdp_sample_args a = sample_args(s, &u);
	double gW[12] = {0};
	ffdp_sample_grad_args g = {&a, s->G, &gu, 0, gW, NULL, NULL, NULL};
	return ffdp_op_sample_grad(s->be, &g, err);
}

/* The deformable stage's call: gu alone. */
static ffdp_status b_sample_grad_gu(bench_state *s, ffdp_error *err)
{
	ffdp_vec u = vec_of(s, s->u), gu = vec_of(s, s->gu);
	ffdp_sample_args a = sample_args(s, &u);
	ffdp_sample_grad_args g = {&a, s->G, &gu, 0, NULL, NULL, NULL, NULL};
	return ffdp_op_sample_grad(s->be, &g, err);
}

/* The affine stage's calls: no u, gW only. */
static ffdp_status b_sample_affine(bench_state *s, ffdp_error *err)
{
	ffdp_sample_args a = sample_args(s, NULL);
	return ffdp_op_sample(s->be, &a, err);
}

static ffdp_status b_sample_grad_affine(bench_state *s, ffdp_error *err)
{
	ffdp_sample_args a = sample_args(s, NULL);
	double gW[12] = {0};
	ffdp_sample_grad_args g = {&a, s->G, NULL, 0, gW, NULL, NULL, NULL};
	return ffdp_op_sample_grad(s->be, &g, err);
}

static ffdp_status b_compose(bench_state *s, ffdp_error *err)
{
	ffdp_compose_args a;
	memset(&a, 0, sizeof(a));
	a.u = vec_of(s, s->u);
	a.d = vec_of(s, s->d);
	a.out = vec_of(s, s->out);
	a.C[0] = a.C[4] = a.C[8] = 1.0;
	a.pad = FFDP_PAD_BORDER;
	return ffdp_op_compose(s->be, &a, err);
}

/* One Newton step of the inverse of u (v = d, the first guess). */
static ffdp_status b_invert(bench_state *s, ffdp_error *err)
{
	ffdp_invert_args a;
	double resid;
	memset(&a, 0, sizeof(a));
	a.w = vec_of(s, s->u);
	a.v = vec_of(s, s->d);
	a.out = vec_of(s, s->out);
	a.C[0] = a.C[4] = a.C[8] = 1.0;
	return ffdp_op_invert_step(s->be, &a, &resid, err);
}

static ffdp_status b_jacobian(bench_state *s, ffdp_error *err)
{
	double I[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
	ffdp_vec u = vec_of(s, s->u);
	return ffdp_op_jacobian_det(s->be, &u, I, I, s->G, err);
}

static ffdp_status loss_run(bench_state *s, int which, ffdp_error *err)
{
	double loss = 0;
	ffdp_loss_args a;
	memset(&a, 0, sizeof(a));
	a.f = s->F, a.m = s->M, a.scale = 1.0, a.gm = s->g, a.loss = &loss;
	if (which == 0)
		return ffdp_op_mse(s->be, &a, err);
	if (which >= 3) {
		/* odd k: gm; even: k + 1 with both gradients (SyN) */
		ffdp_lncc_opts o = {.k = which | 1, .exact_grad = 1, .eps = 0.0};
		a.gf = which & 1 ? NULL : s->out[0];
		return ffdp_op_lncc(s->be, &a, &o, err);
	}
	ffdp_mi_opts o;
	memset(&o, 0, sizeof(o));
	o.bins = 32, o.kernel = which == 1 ? FFDP_MI_GAUSSIAN : FFDP_MI_BSPLINE3;
	o.f_lo = 0, o.f_hi = 1, o.m_lo = 0, o.m_hi = 1;
	return ffdp_op_mi(s->be, &a, &o, err);
}

static ffdp_status b_mse(bench_state *s, ffdp_error *err) { return loss_run(s, 0, err); }
static ffdp_status b_lncc3(bench_state *s, ffdp_error *err) { return loss_run(s, 3, err); }
static ffdp_status b_lncc5(bench_state *s, ffdp_error *err) { return loss_run(s, 5, err); }
static ffdp_status b_lncc9(bench_state *s, ffdp_error *err) { return loss_run(s, 9, err); }
static ffdp_status b_lncc5_both(bench_state *s, ffdp_error *err) { return loss_run(s, 4, err); }
static ffdp_status b_mi_gauss(bench_state *s, ffdp_error *err) { return loss_run(s, 1, err); }
static ffdp_status b_mi_bspline(bench_state *s, ffdp_error *err) { return loss_run(s, 2, err); }

static ffdp_status b_smooth(bench_state *s, ffdp_error *err)
{
	ffdp_smooth_opts o = {{1.0, 1.0, 1.0}, 2.0, 0};
	return ffdp_op_smooth_vec(s->be, vec_of(s, s->out), &o, err);
}

static ffdp_status b_adam(bench_state *s, ffdp_error *err)
{
	ffdp_adam_opts o = {3, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL};
	return ffdp_op_adam_moments(s->be, vec_of(s, s->gu), vec_of(s, s->mm), vec_of(s, s->vv), &o, &s->max_norm, err);
}

static ffdp_status b_adam16(bench_state *s, ffdp_error *err)
{
	ffdp_adam_opts o = {3, 0.9, 0.99, 1e-8, FFDP_MOMENTS_BF16, 0, NULL, NULL};
	return ffdp_op_adam_moments(s->be, vec_of(s, s->gu), vec_of(s, s->ww), vec_of(s, s->ww), &o, &s->max_norm16,
				    err);
}

/* As the greedy stage calls it: the largest step a quarter voxel, max_norm
 * given (no reach pass). */
static ffdp_status warp_step(bench_state *s, ffdp_moment_store ms, ffdp_error *err)
{
	ffdp_warp_step_opts o;
	memset(&o, 0, sizeof(o));
	const double mn = ms == FFDP_MOMENTS_BF16 ? s->max_norm16 : s->max_norm;
	o.adam = (ffdp_adam_opts){3, 0.9, 0.99, 1e-8, ms, 0, NULL, NULL};
	o.step = -0.25 / fmax(1.0, mn), o.max_norm = mn;
	o.compose = 1, o.pad = FFDP_PAD_BORDER;
	o.C[0] = o.C[4] = o.C[8] = 1.0;
	float **m = ms == FFDP_MOMENTS_BF16 ? s->ww : s->mm, **v = ms == FFDP_MOMENTS_BF16 ? s->ww : s->vv;
	return ffdp_op_warp_step(s->be, vec_of(s, s->out), vec_of(s, m), vec_of(s, v), &o, err);
}

static ffdp_status b_warp_step(bench_state *s, ffdp_error *err)
{
	return warp_step(s, FFDP_MOMENTS_F32, err);
}

static ffdp_status b_warp_step16(bench_state *s, ffdp_error *err)
{
	return warp_step(s, FFDP_MOMENTS_BF16, err);
}

typedef struct bench_op {
	const char *name;
	bench_fn fn;
	double bytes_per_voxel; /* the floor: each input read once, each output written once */
} bench_op;

static const bench_op ops[] = {
	{"sample fwd (u)", b_sample, 20},       /* u 12 + M 4 + out 4 */
	{"sample bwd gu+gW", b_sample_grad, 32}, /* u 12 + M 4 + gout 4 + gu 12 */
	{"sample bwd gu only", b_sample_grad_gu, 32}, /* the same bytes */
	{"sample fwd affine", b_sample_affine, 8},    /* M 4 + out 4 */
	{"sample bwd gW affine", b_sample_grad_affine, 8}, /* M 4 + gout 4 */
	{"compose", b_compose, 36},             /* u 12 + d 12 + out 12 */
	{"invert step", b_invert, 36},          /* w 12 + v 12 + out 12 */
	{"jacobian det", b_jacobian, 16},       /* u 12 + out 4 */
	{"mse fwd+bwd", b_mse, 12},             /* f 4 + m 4 + gm 4 */
	{"lncc k=3 fwd+bwd", b_lncc3, 12},      /* f 4 + m 4 + gm 4 */
	{"lncc k=5 fwd+bwd", b_lncc5, 12},      /* the registration default */
	{"lncc k=9 fwd+bwd", b_lncc9, 12},
	{"lncc k=5 gf+gm", b_lncc5_both, 16},   /* SyN: f 4 + m 4 + gf 4 + gm 4 */
	{"mi32 gauss fwd+bwd", b_mi_gauss, 12},
	{"mi32 bspl fwd+bwd", b_mi_bspline, 12},
	{"smooth vec s=1", b_smooth, 24},       /* 3 planes read + written */
	{"adam moments", b_adam, 60},           /* g, m, v read; m, v written */
	{"warp step", b_warp_step, 48},         /* u, m, v read; u written */
	{"adam moments bf16", b_adam16, 36},    /* g, words read; words written */
	{"warp step bf16", b_warp_step16, 36},  /* u, words read; u written */
};

static double time_op(bench_state *s, const bench_op *op, int reps, ffdp_error *err, ffdp_status *st)
{
	double best = 1e30;
	*st = op->fn(s, err); /* warm-up */
	for (int r = 0; r < reps && *st == FFDP_OK; r++) {
		double t0 = ffdp_now();
		*st = op->fn(s, err);
		best = fmin(best, ffdp_now() - t0);
	}
	return best;
}

/* One measured op, printed once the best copy rate is known. */
typedef struct bench_row {
	const char *name;
	char msg[FFDP_ERROR_MSG_LEN]; /* empty: it ran */
	int64_t edge;
	double tn, t1, floor_bytes;
} bench_row;

static bench_row rows[1024];
static int n_rows;

static char **only;
static int n_only;

static int selected(const char *name)
{
	for (int i = 0; i < n_only; i++)
		if (strstr(name, only[i]))
			return 1;
	return n_only == 0;
}

static int run_size(int64_t edge, copy_probe *cp)
{
	bench_state s;
	memset(&s, 0, sizeof(s));
	ffdp_error err = {0};
	if (ffdp_backend_open(FFDP_BACKEND_CPU, 0, &s.be, &err)) {
		fprintf(stderr, "bench: %s\n", err.msg);
		return 1;
	}
	s.n[0] = s.n[1] = s.n[2] = edge;
	s.nvox = edge * edge * edge;
	size_t bytes = (size_t)s.nvox * sizeof(float);
	float **all[] = {&s.f, &s.m, &s.g};
	for (int i = 0; i < 3; i++)
		*all[i] = ffdp_alloc(bytes, &err);
	for (int c = 0; c < 3; c++) {
		s.u[c] = ffdp_alloc(bytes, &err), s.d[c] = ffdp_alloc(bytes, &err);
		s.gu[c] = ffdp_alloc(bytes, &err), s.mm[c] = ffdp_alloc(bytes, &err);
		s.vv[c] = ffdp_alloc(bytes, &err), s.out[c] = ffdp_alloc(bytes, &err);
		s.ww[c] = ffdp_alloc(bytes, &err);
		if (!s.u[c] || !s.d[c] || !s.gu[c] || !s.mm[c] || !s.vv[c] || !s.out[c] || !s.ww[c]) {
			fprintf(stderr, "bench: %s\n", err.msg);
			return 1;
		}
		fill(s.u[c], s.nvox, 11 + c, -1.5f, 1.5f);
		fill(s.d[c], s.nvox, 21 + c, -0.5f, 0.5f);
		fill(s.gu[c], s.nvox, 31 + c, -1.0f, 1.0f);
		fill(s.vv[c], s.nvox, 41 + c, 0.0f, 1.0f);
		memcpy(s.out[c], s.u[c], bytes);
	}
	fill(s.f, s.nvox, 1, 0.0f, 1.0f);
	fill(s.m, s.nvox, 2, 0.0f, 1.0f);
	fill(s.g, s.nvox, 3, -1.0f, 1.0f);
	ffdp_img F = {s.f, {edge, edge, edge}}, M = {s.m, {edge, edge, edge}}, G = {s.g, {edge, edge, edge}};
	s.F = F, s.M = M, s.G = G;
	ffdp_adam_opts ao = {3, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL};
	ffdp_status st0 = ffdp_op_adam_moments(s.be, vec_of(&s, s.gu), vec_of(&s, s.mm), vec_of(&s, s.vv), &ao,
					       &s.max_norm, &err);
	for (int c = 0; c < 3 && !st0; c++) {
		ffdp_img w = {s.ww[c], {edge, edge, edge}}, m = {s.mm[c], {edge, edge, edge}}, v = {s.vv[c], {edge, edge, edge}};
		st0 = ffdp_op_moments_put(s.be, w, 0, m, &err);
		st0 = st0 ? st0 : ffdp_op_moments_put(s.be, w, 1, v, &err);
	}
	if (st0 || b_adam16(&s, &err)) {
		fprintf(stderr, "bench: %s\n", err.msg);
		return 1;
	}

	int tmax = max_threads();
	for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
		const bench_op *op = &ops[k];
		ffdp_status st;
		if (!selected(op->name))
			continue;
		copy_sample(cp, 2);
		set_threads(1);
		double t1 = time_op(&s, op, 2, &err, &st);
		set_threads(tmax);
		double tn = st == FFDP_OK ? time_op(&s, op, 4, &err, &st) : 0;
		if (n_rows < (int)(sizeof(rows) / sizeof(rows[0]))) {
			bench_row *r = &rows[n_rows++];
			*r = (bench_row){.name = op->name, .edge = edge, .tn = tn, .t1 = t1,
					 .floor_bytes = op->bytes_per_voxel * (double)s.nvox};
			if (st != FFDP_OK)
				snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
		}
	}
	for (int i = 0; i < 3; i++)
		ffdp_free(*all[i]);
	for (int c = 0; c < 3; c++) {
		ffdp_free(s.u[c]), ffdp_free(s.d[c]), ffdp_free(s.gu[c]);
		ffdp_free(s.mm[c]), ffdp_free(s.vv[c]), ffdp_free(s.out[c]), ffdp_free(s.ww[c]);
	}
	ffdp_backend_close(s.be);
	return 0;
}

int main(int argc, char **argv)
{
	ffdp_log_set_level(FFDP_LOG_WARN);
	copy_probe cp;
	copy_open(&cp);
	int rc = 0, sizes = 0;
	only = malloc((size_t)argc * sizeof(*only));
	for (int i = 1; i < argc; i++)
		if (atoll(argv[i]) <= 0)
			only[n_only++] = argv[i];
	for (int i = 1; i < argc; i++)
		if (atoll(argv[i]) > 0)
			rc |= run_size(atoll(argv[i]), &cp), sizes++;
	if (!sizes) {
		rc |= run_size(128, &cp);
		rc |= run_size(192, &cp);
	}
	const double bw = cp.best;
	printf("ffdp CPU op benchmark: %d threads, copy bandwidth %.2f GB/s (read + write; the best of the run's "
	       "samples, %.1f-%.1f)\n",
	       max_threads(), bw / 1e9, cp.worst / 1e9, cp.best / 1e9);
	printf("%-20s %7s %12s %11s %12s %8s %7s\n", "op", "size", "time", "floor B", "eff. BW", "/floor",
	       "1->N");
	for (int i = 0; i < n_rows; i++) {
		const bench_row *r = &rows[i];
		if (r->msg[0]) {
			printf("%-20s %5lld^3  %s\n", r->name, (long long)r->edge, r->msg);
			continue;
		}
		printf("%-20s %5lld^3 %9.2f ms %8.1f MB %7.2f GB/s %7.2fx %6.2fx\n", r->name, (long long)r->edge,
		       1e3 * r->tn, r->floor_bytes / 1e6, r->floor_bytes / r->tn / 1e9, r->tn / (r->floor_bytes / bw),
		       r->t1 / r->tn);
	}
	ffdp_free(cp.a);
	ffdp_free(cp.b);
	free(only);
	return rc;
}

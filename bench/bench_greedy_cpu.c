/* One greedy iteration on the CPU, op by op (the sequence of
 * src/reg/deformable.c: sample fwd, LNCC k=5 exact fwd+bwd to gm, sample
 * bwd to u, smooth gradient sigma 1, Adam moments, warp step composed in
 * place, smooth warp sigma 0.5), best-of-reps time per op.
 *
 * usage: bench_greedy_cpu [N|NXxNYxNZ [reps [scalar] [sgrad=S]]]   (size,
 * default 128^3, and 3 reps; "scalar" forces the scalar kernels; S the
 * gradient sigma, default 1, the pipeline's is 1.5).  Threads from
 * OMP_NUM_THREADS.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_ops.h"
#include "ffdp/ffdp.h"

enum { NOPS = 7 };

static const char *names[NOPS] = {"sample fwd (u)", "lncc k=5 exact gm", "sample bwd gu", "smooth grad",
				  "adam moments", "warp step", "smooth warp s=.5"};

static void fill(float *x, int64_t n, unsigned seed, float lo, float hi)
{
	for (int64_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		x[i] = lo + (hi - lo) * (float)(seed >> 8) / 16777216.0f;
	}
}

/* A smooth image with some texture, so LNCC windows are not flat. */
static void fill_image(float *x, const int64_t n[3], double ph)
{
	for (int64_t z = 0; z < n[2]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t i = 0; i < n[0]; i++)
				x[(z * n[1] + y) * n[0] + i] = (float)(100.0 + 50.0 * sin(0.21 * i + ph) *
										cos(0.17 * y - ph) +
								       30.0 * sin(0.13 * z + 0.07 * i));
}

int main(int argc, char **argv)
{
	int64_t n[3] = {128, 128, 128};
	if (argc > 1 && sscanf(argv[1], "%" SCNd64 "x%" SCNd64 "x%" SCNd64, &n[0], &n[1], &n[2]) != 3)
		n[0] = n[1] = n[2] = atoll(argv[1]);
	int reps = argc > 2 ? atoi(argv[2]) : 3;
	double sgrad = 1.0;
	int scalar = 0;
	for (int i = 3; i < argc; i++) {
		scalar |= !strcmp(argv[i], "scalar");
		if (!strncmp(argv[i], "sgrad=", 6))
			sgrad = atof(argv[i] + 6);
	}
	if (n[0] < 1 || n[1] < 1 || n[2] < 1 || reps < 1) {
		fprintf(stderr, "usage: bench_greedy_cpu [N|NXxNYxNZ [reps [scalar] [sgrad=S]]]\n");
		return 1;
	}
	int64_t nv = n[0] * n[1] * n[2];
	size_t bytes = (size_t)nv * sizeof(float);
	ffdp_error err = {0};
	ffdp_backend *be;

	ffdp_log_set_level(FFDP_LOG_WARN);
	ffdp_cpu_force_scalar = scalar;
	if (ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err)) {
		fprintf(stderr, "bench: %s\n", err.msg);
		return 1;
	}
	float *f = ffdp_alloc(bytes, &err), *mv = ffdp_alloc(bytes, &err);
	float *wp = ffdp_alloc(bytes, &err), *gi = ffdp_alloc(bytes, &err);
	float *u[3], *g[3], *m[3], *v[3];
	for (int c = 0; c < 3; c++) {
		u[c] = ffdp_alloc(bytes, &err), g[c] = ffdp_alloc(bytes, &err);
		m[c] = ffdp_alloc(bytes, &err), v[c] = ffdp_alloc(bytes, &err);
		if (!u[c] || !g[c] || !m[c] || !v[c]) {
			fprintf(stderr, "bench: %s\n", err.msg);
			return 1;
		}
		fill(u[c], nv, 11 + c, -1.0f, 1.0f);
	}
	if (!f || !mv || !wp || !gi) {
		fprintf(stderr, "bench: %s\n", err.msg);
		return 1;
	}
	fill_image(f, n, 0.0);
	fill_image(mv, n, 0.3);
	ffdp_img F = {f, {n[0], n[1], n[2]}}, M = {mv, {n[0], n[1], n[2]}};
	ffdp_img WP = {wp, {n[0], n[1], n[2]}}, GI = {gi, {n[0], n[1], n[2]}};
	ffdp_vec U = {{u[0], u[1], u[2]}, {n[0], n[1], n[2]}, 3}, G = {{g[0], g[1], g[2]}, {n[0], n[1], n[2]}, 3};
	ffdp_vec Mo = {{m[0], m[1], m[2]}, {n[0], n[1], n[2]}, 3}, V = {{v[0], v[1], v[2]}, {n[0], n[1], n[2]}, 3};

	ffdp_sample_args sa;
	memset(&sa, 0, sizeof(sa));
	sa.moving = M;
	double W[12] = {0.998, 0.05, 0.0, 1.3, -0.05, 0.998, 0.01, -0.7, 0.0, -0.01, 1.0, 0.4};
	double B[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
	memcpy(sa.W, W, sizeof(W));
	memcpy(sa.B, B, sizeof(B));
	sa.u = &U, sa.out = WP, sa.pad = FFDP_PAD_ZERO;
	ffdp_sample_grad_args ga = {&sa, GI, &G, 0, NULL, NULL, NULL, NULL};
	double loss;
	ffdp_loss_args la;
	memset(&la, 0, sizeof(la));
	la.f = F, la.m = WP, la.scale = (double)nv, la.gm = gi, la.loss = &loss;
	ffdp_lncc_opts lo = {.k = 5, .exact_grad = 1, .eps = 0.0};
	ffdp_smooth_opts gs = {{sgrad, sgrad, sgrad}, 2.0, 0}, ws = {{0.5, 0.5, 0.5}, 2.0, 0};

	double best[NOPS], tot = 0;
	for (int k = 0; k < NOPS; k++)
		best[k] = 1e30;
	for (int it = 1; it <= reps + 1; it++) {
		ffdp_adam_opts ao = {it, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL};
		double maxn = 0, t[NOPS + 1];
		ffdp_warp_step_opts wo;
		memset(&wo, 0, sizeof(wo));
		int s = 0;
		t[0] = ffdp_now();
		s |= ffdp_op_sample(be, &sa, &err);
		t[1] = ffdp_now();
		s |= ffdp_op_lncc(be, &la, &lo, &err);
		t[2] = ffdp_now();
		s |= ffdp_op_sample_grad(be, &ga, &err);
		t[3] = ffdp_now();
		s |= ffdp_op_smooth_vec(be, G, &gs, &err);
		t[4] = ffdp_now();
		s |= ffdp_op_adam_moments(be, G, Mo, V, &ao, &maxn, &err);
		t[5] = ffdp_now();
		wo.adam = ao, wo.step = -0.25 / fmax(1.0, maxn), wo.max_norm = maxn, wo.compose = 1;
		wo.pad = FFDP_PAD_BORDER, wo.C[0] = wo.C[4] = wo.C[8] = 1.0;
		s |= ffdp_op_warp_step(be, U, Mo, V, &wo, &err);
		t[6] = ffdp_now();
		s |= ffdp_op_smooth_vec(be, U, &ws, &err);
		t[7] = ffdp_now();
		if (s) {
			fprintf(stderr, "bench: %s\n", err.msg);
			return 1;
		}
		if (it == 1)
			continue; /* warm-up */
		for (int k = 0; k < NOPS; k++)
			best[k] = fmin(best[k], t[k + 1] - t[k]);
	}
	printf("greedy iteration at %lldx%lldx%lld, sigma_grad %g, %d threads, best of %d, %s kernels (loss %.9f)\n",
	       (long long)n[0], (long long)n[1], (long long)n[2], sgrad, ffdp_num_threads(), reps,
	       ffdp_cpu_use_avx2() ? "AVX2" : "scalar", loss);
	for (int k = 0; k < NOPS; k++)
		tot += best[k];
	for (int k = 0; k < NOPS; k++)
		printf("%-20s %9.2f ms %7.2f ns/voxel %5.1f%%\n", names[k], 1e3 * best[k], 1e9 * best[k] / (double)nv,
		       100.0 * best[k] / tot);
	printf("%-20s %9.2f ms %7.2f ns/voxel\n", "total", 1e3 * tot, 1e9 * tot / (double)nv);
	ffdp_free(f), ffdp_free(mv), ffdp_free(wp), ffdp_free(gi);
	for (int c = 0; c < 3; c++)
		ffdp_free(u[c]), ffdp_free(g[c]), ffdp_free(m[c]), ffdp_free(v[c]);
	ffdp_backend_close(be);
	return 0;
}

/* GPU loss benchmark: LNCC (k = 3, 5, 7; exact and ANTs gradients; k = 7
 * with gf too) and MI (32 bins, Gaussian and B-spline), forward + backward
 * (loss and gm), on n^3 volumes.  Per op: CUDA-event median of 10 calls
 * after 3 warm-ups, the bytes of its floor (f and m read once, gm written
 * once: 12 B/voxel; 16 with gf), the floor at 2.96 TB/s (the anchors' copy
 * bandwidth) and at this device's measured device-to-device copy
 * bandwidth, time / floor, the FFDP anchor (reference/anchors.md, H100) and
 * the peak extra device memory (stream-ordered pool high-water mark).
 *
 * Data: a sphere of smooth structure and noise in a noisy background
 * (about 73 % background), so MI sees flat regions as real images do.
 *
 * usage: bench_losses_gpu [N ...]   (cube edges, default 256 512)
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffdp/ffdp.h"

#define ANCHOR_BW 2.96e12

typedef struct bench {
	ffdp_backend *be;
	int64_t n[3], nvox;
	float *f, *m, *g, *g2; /* device */
	cudaMemPool_t pool;
	double bw;        /* measured D2D bandwidth, bytes read + written per s */
} bench;

static void die(const char *what, const ffdp_error *err)
{
	fprintf(stderr, "bench_losses_gpu: %s: %s\n", what, err ? err->msg : "CUDA error");
	exit(1);
}

static uint32_t hash32(uint64_t x)
{
	x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ull, x ^= x >> 33;
	return (uint32_t)x;
}

/* f: smooth separable structure in a sphere + noise, background noise;
 * m: f blurred in intensity and remapped (a multimodal-looking pair). */
static void make_data(bench *b)
{
	const int64_t n = b->n[0], nv = b->nvox;
	float *h = malloc((size_t)nv * sizeof(float)), *s = malloc(3 * (size_t)n * sizeof(float));
	ffdp_error err;
	if (!h || !s)
		die("host memory", NULL);
	for (int64_t i = 0; i < n; i++) {
		double t = (double)i / (double)n;
		s[i] = (float)sin(6.0 * t), s[n + i] = (float)cos(5.0 * t), s[2 * n + i] = (float)sin(4.0 * t + 1.0);
	}
	for (int pass = 0; pass < 2; pass++) {
		for (int64_t z = 0; z < n; z++)
			for (int64_t y = 0; y < n; y++)
				for (int64_t x = 0; x < n; x++) {
					double dx = x - 0.5 * n, dy = y - 0.5 * n, dz = z - 0.5 * n, r = 0.4 * n;
					int64_t i = (z * n + y) * n + x;
					double noise = (double)(hash32((uint64_t)i * 2 + (uint64_t)pass) >> 8) / 16777216.0 - 0.5;
					double v = 0.02 * noise;
					if (dx * dx + dy * dy + dz * dz < r * r) {
						double a = 1.0 + 0.5 * s[x] * s[n + y] + 0.3 * s[2 * n + z];
						v += pass ? 2.0 - a * a * 0.5 : a; /* m: a nonlinear remap of f */
					}
					h[i] = (float)(pass ? 100.0 * v : 1000.0 * v);
				}
		if (ffdp_buf_upload(b->be, pass ? b->m : b->f, h, (size_t)nv * sizeof(float), &err))
			die("upload", &err);
	}
	free(h), free(s);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Device-to-device copy bandwidth (read + write), median of 10, 256 MiB. */
static double copy_bandwidth(void)
{
	const size_t bytes = (size_t)256 << 20;
	void *a = NULL, *c = NULL;
	cudaEvent_t e0, e1;
	double t[10];
	if (cudaMalloc(&a, bytes) || cudaMalloc(&c, bytes))
		die("copy buffers", NULL);
	cudaEventCreate(&e0), cudaEventCreate(&e1);
	for (int i = 0; i < 13; i++) {
		cudaEventRecord(e0, 0);
		cudaMemcpy(c, a, bytes, cudaMemcpyDeviceToDevice);
		cudaEventRecord(e1, 0);
		cudaEventSynchronize(e1);
		float ms = 0;
		cudaEventElapsedTime(&ms, e0, e1);
		if (i >= 3)
			t[i - 3] = ms;
	}
	qsort(t, 10, sizeof(double), cmp_double);
	cudaFree(a), cudaFree(c);
	cudaEventDestroy(e0), cudaEventDestroy(e1);
	return 2.0 * (double)bytes / (0.5 * (t[4] + t[5]) * 1e-3);
}

typedef struct op_cfg {
	const char *name;
	int mi, k, exact; /* LNCC window, exact gradient; or MI kernel */
	double anchor256, anchor512;
	int both;         /* gf as well as gm (LNCC) */
} op_cfg;

static ffdp_status run_op(bench *b, const op_cfg *c, ffdp_error *err)
{
	double loss;
	ffdp_loss_args a = {{b->f, {b->n[0], b->n[1], b->n[2]}}, {b->m, {b->n[0], b->n[1], b->n[2]}}, NULL, 0.0, 1.0,
			    c->both ? b->g2 : NULL, b->g, &loss, NULL, NULL, NULL, NULL};
	if (c->mi) {
		ffdp_mi_opts o = {32, c->k == 1 ? FFDP_MI_GAUSSIAN : FFDP_MI_BSPLINE3, -20.0, 1820.0, -5.0, 205.0, NULL, NULL, NULL, 0};
		return ffdp_op_mi(b->be, &a, &o, err);
	}
	ffdp_lncc_opts o = {.k = c->k, .exact_grad = c->exact, .eps = 0.0};
	return ffdp_op_lncc(b->be, &a, &o, err);
}

static void bench_op(bench *b, const op_cfg *c)
{
	cudaEvent_t e0, e1;
	ffdp_error err;
	double t[10];
	unsigned long long zero = 0, high = 0;

	cudaEventCreate(&e0), cudaEventCreate(&e1);
	cudaDeviceSynchronize();
	cudaMemPoolTrimTo(b->pool, 0);
	cudaMemPoolSetAttribute(b->pool, cudaMemPoolAttrUsedMemHigh, &zero);
	for (int i = 0; i < 13; i++) {
		cudaEventRecord(e0, 0);
		if (run_op(b, c, &err))
			die(c->name, &err);
		cudaEventRecord(e1, 0);
		cudaEventSynchronize(e1);
		float ms = 0;
		cudaEventElapsedTime(&ms, e0, e1);
		if (i >= 3)
			t[i - 3] = ms;
	}
	cudaMemPoolGetAttribute(b->pool, cudaMemPoolAttrUsedMemHigh, &high);
	qsort(t, 10, sizeof(double), cmp_double);
	const double ms = 0.5 * (t[4] + t[5]);
	const double bytes = (c->both ? 16.0 : 12.0) * (double)b->nvox; /* f, m read + gm (gf) written */
	const double fa = bytes / ANCHOR_BW * 1e3, fm = bytes / b->bw * 1e3;
	const double anchor = b->n[0] == 256 ? c->anchor256 : b->n[0] == 512 ? c->anchor512 : 0.0;
	char an[32] = "-", ratio[32] = "-";
	if (anchor > 0) {
		snprintf(an, sizeof(an), "%.2f", anchor);
		snprintf(ratio, sizeof(ratio), "%.1fx", anchor / ms);
	}
	printf("| %-22s | %4ld | %8.3f | %7.0f MB | %7.3f | %7.3f | %6.1f | %7s | %7s | %8.3f |\n", c->name,
	       (long)b->n[0], ms, bytes / 1e6, fa, fm, ms / fm, an, ratio, (double)high / (1 << 20));
	cudaEventDestroy(e0), cudaEventDestroy(e1);
}

int main(int argc, char **argv)
{
	static const op_cfg ops[] = {
		{"lncc k=3 exact", 0, 3, 1, 7.26, 0, 0},
		{"lncc k=3 approx", 0, 3, 0, 0, 0, 0},
		{"lncc k=5 exact", 0, 5, 1, 0, 0, 0},
		{"lncc k=5 exact gm+gf", 0, 5, 1, 0, 0, 1},
		{"lncc k=5 approx", 0, 5, 0, 0, 0, 0},
		{"lncc k=7 exact", 0, 7, 1, 9.53, 72.5, 0},
		{"lncc k=7 exact gm+gf", 0, 7, 1, 0, 0, 1},
		{"lncc k=7 approx", 0, 7, 0, 6.19, 0, 0},
		{"mi 32 gauss", 1, 1, 0, 51.3, 388, 0},
		{"mi 32 bspline", 1, 2, 0, 51.3, 388, 0},
	};
	int edges[16] = {256, 512}, nedge = 2;
	bench b;
	ffdp_error err;

	if (argc > 1)
		for (nedge = 0; nedge < argc - 1 && nedge < 16; nedge++)
			edges[nedge] = atoi(argv[nedge + 1]);
	memset(&b, 0, sizeof(b));
	if (ffdp_backend_open(FFDP_BACKEND_CUDA, 0, &b.be, &err))
		die("cuda backend", &err);
	cudaDeviceGetDefaultMemPool(&b.pool, 0);
	b.bw = copy_bandwidth();
	printf("device-to-device copy: %.2f TB/s (read + write); anchors' floor uses %.2f TB/s\n\n", b.bw / 1e12,
	       ANCHOR_BW / 1e12);
	printf("| op                     |    n |       ms |  floor bytes | fl 2.96 | fl meas | t/floor | FFDP ms | FFDP/us | peak MiB |\n");
	printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
	for (int e = 0; e < nedge; e++) {
		const int64_t n = edges[e];
		b.n[0] = b.n[1] = b.n[2] = n;
		b.nvox = n * n * n;
		const size_t bytes = (size_t)b.nvox * sizeof(float);
		b.f = ffdp_buf_alloc(b.be, bytes, &err);
		b.m = b.f ? ffdp_buf_alloc(b.be, bytes, &err) : NULL;
		b.g = b.m ? ffdp_buf_alloc(b.be, bytes, &err) : NULL;
		b.g2 = b.g ? ffdp_buf_alloc(b.be, bytes, &err) : NULL;
		if (!b.g2)
			die("volumes", &err);
		make_data(&b);
		for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
			if (n == 256 || n != 512 || ops[i].k == 7 || ops[i].mi)
				bench_op(&b, &ops[i]);
		ffdp_buf_free(b.be, b.f), ffdp_buf_free(b.be, b.m), ffdp_buf_free(b.be, b.g), ffdp_buf_free(b.be, b.g2);
	}
	ffdp_backend_close(b.be);
	return 0;
}

/* Whole-registration benchmark on CUDA: per preset, ffdp_register with the
 * backend-resident pipeline, printing per-stage seconds, total seconds, the
 * final loss, the global NCC of the warped moving image against the fixed
 * one (ffdp_eval_ncc), and device memory in use (cudaMemGetInfo through
 * ffdp_cuda_mem_used: before, the peak seen by a thread polling every
 * millisecond during the run, and the difference; it includes the stream-
 * ordered pool's cache, so it is an upper bound on the live state).
 *
 * usage: bench_register_gpu [--upsample K] [--k K] [--ants] [--full] [--f32] [--u16] [--no-inverse] [--anchor]
 *                           [--verbose] [--finest N] [fixed moving] [preset ...]
 *   default pair: ../shared/data/cfireants_validate/medium/MNI152_T1_1mm_brain.nii.gz
 *                 (fixed) and t1_brain.nii.gz (moving); default presets: greedy syn
 *   --upsample K: resample both images K times finer on each axis (same
 *                 physical extent, trilinear on the GPU) first: K = 4 turns
 *                 the 1 mm pair into issue #5's 728x872x728 pair.
 *   --k K:        LNCC window of every stage (default: the presets' 5).
 *   --ants:       ANTs' centre-window LNCC gradient in every stage (FFDP's
 *                 fused loss's default, use_ants_gradient) instead of the exact one.
 *   --full:       no convergence test: every level runs all its iterations
 *                 (timings comparable with FFDP's fixed schedules).
 *   --f32:        Adam's moments in float (the presets' are bfloat16).
 *   --u16:        the images as unorm16 (ffdp_reg_opts.images16).
 *   --no-inverse: no inverse warp (FFDP computes none).
 *   --anchor:     the schedule of anchors.md's whole-registration rows:
 *                 affine and greedy both 4,2,1 x 200,100,50 (the presets
 *                 run affine 8,4,2,1 x 200,100,50,20 and greedy 4,2,1 x
 *                 200,100,25: fewer full-resolution iterations).
 *   --verbose:    the debug log: each level's set-up and iteration times.
 *   --finest N:   affine and greedy run the full-resolution level alone, N
 *                 iterations each (few kernel launches: for a profiler).
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ffdp/ffdp.h"

#define DATA "../shared/data/cfireants_validate/medium/"

typedef struct poller {
	pthread_t th;
	atomic_int stop;
	size_t peak;
} poller;

static void *poll_memory(void *arg)
{
	poller *p = arg;
	const struct timespec ms = {0, 1000000};
	while (!atomic_load(&p->stop)) {
		size_t used = 0;
		if (!ffdp_cuda_mem_used(&used, NULL) && used > p->peak)
			p->peak = used;
		nanosleep(&ms, NULL);
	}
	return NULL;
}

static int is_preset(const char *s)
{
	static const char *names[] = {"rigid", "affine", "greedy", "syn", "default"};
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
		if (!strcmp(s, names[k]))
			return 1;
	return 0;
}

/* Global NCC of F and M warped onto F's grid through T + u (on CUDA). */
static ffdp_status warped_ncc(const ffdp_volume *F, const ffdp_volume *M, const ffdp_mat4 *T, const ffdp_field *u,
			      double *ncc, ffdp_error *err)
{
	ffdp_backend *be = NULL;
	ffdp_volume W = {0};
	ffdp_status s = ffdp_backend_open(FFDP_BACKEND_CUDA, 0, &be, err);
	if (!s)
		s = ffdp_warp_volume(be, M, &F->grid, T, u, FFDP_INTERP_LINEAR, &W, err);
	if (!s)
		s = ffdp_eval_ncc(F, &W, NULL, ncc, err);
	ffdp_volume_free(&W);
	ffdp_backend_close(be);
	return s;
}

static double mib(size_t b)
{
	return (double)b / (1024.0 * 1024.0);
}

/* v resampled onto a grid k times finer with the same extent (the
 * pyramid's level rule with shrink 1/k), replacing v. */
static ffdp_status upsample(ffdp_volume *v, int k, ffdp_error *err)
{
	ffdp_grid g = v->grid;
	double off[3];
	for (int a = 0; a < 3; a++) {
		g.n[a] = v->grid.n[a] * k;
		g.spacing[a] = v->grid.spacing[a] / k;
		off[a] = v->grid.spacing[a] * (1.0 / k - 1.0) * 0.5;
	}
	for (int r = 0; r < 3; r++)
		for (int a = 0; a < 3; a++)
			g.origin[r] += v->grid.dir[3 * r + a] * off[a];
	ffdp_backend *be = NULL;
	ffdp_volume W = {0};
	ffdp_mat4 id = ffdp_mat4_identity();
	ffdp_status s = ffdp_backend_open(FFDP_BACKEND_CUDA, 0, &be, err);
	if (!s)
		s = ffdp_warp_volume(be, v, &g, &id, NULL, FFDP_INTERP_LINEAR, &W, err);
	ffdp_backend_close(be);
	if (!s) {
		ffdp_volume_free(v);
		*v = W;
	}
	return s;
}

static int g_k, g_ants, g_full, g_f32, g_u16, g_noinv, g_anchor, g_finest; /* command-line overrides, set once in main */

/* Scales 4, 2, 1 with 200, 100, 50 iterations (FFDP's timed runs). */
static void anchor_schedule(ffdp_stage *st)
{
	static const int shrink[3] = {4, 2, 1}, iters[3] = {200, 100, 50};
	st->nlevels = 3;
	for (int l = 0; l < 3; l++)
		st->shrink[l] = shrink[l], st->iters[l] = iters[l];
}

static int run_preset(const char *preset, const ffdp_volume *F, const ffdp_volume *M)
{
	ffdp_error err = {0};
	ffdp_reg_opts o;
	ffdp_reg_result r;
	if (ffdp_reg_preset(preset, &o, &err)) {
		fprintf(stderr, "bench_register_gpu: %s\n", err.msg);
		return 1;
	}
	o.backend = FFDP_BACKEND_CUDA;
	if (g_f32)
		o.moments = FFDP_MOMENTS_F32;
	o.want_inverse = !g_noinv;
	o.images16 = g_u16;
	for (int k = 0; k < o.nstages; k++) {
		if (g_k > 0)
			o.stages[k].metric.lncc_k = g_k;
		if (g_ants)
			o.stages[k].metric.lncc_exact = 0;
		if (g_full)
			o.stages[k].window = 0; /* no convergence test */
		if (g_anchor && (o.stages[k].kind == FFDP_STAGE_AFFINE || o.stages[k].kind == FFDP_STAGE_GREEDY))
			anchor_schedule(&o.stages[k]);
		if (g_finest > 0 && (o.stages[k].kind == FFDP_STAGE_AFFINE || o.stages[k].kind == FFDP_STAGE_GREEDY)) {
			o.stages[k].nlevels = 1;
			o.stages[k].shrink[0] = 1, o.stages[k].iters[0] = g_finest;
		}
	}
	size_t before = 0;
	if (ffdp_cuda_mem_used(&before, &err)) {
		fprintf(stderr, "bench_register_gpu: %s\n", err.msg);
		return 1;
	}
	poller p;
	memset(&p, 0, sizeof(p));
	atomic_init(&p.stop, 0);
	p.peak = before;
	int polling = pthread_create(&p.th, NULL, poll_memory, &p) == 0;
	ffdp_status s = ffdp_register(F, M, &o, &r, &err);
	atomic_store(&p.stop, 1);
	if (polling)
		pthread_join(p.th, NULL);
	if (s) {
		fprintf(stderr, "bench_register_gpu: %s: %s\n", preset, err.msg);
		return 1;
	}
	printf("%s%s%s%s%s:\n", preset, o.moments == FFDP_MOMENTS_BF16 ? " (bf16 moments)" : " (f32 moments)", g_u16 ? " (u16 images)" : "",
	       g_noinv ? " (no inverse)" : "", g_anchor ? " (anchor schedule)" : "");
	for (int k = 0; k < r.nstages; k++)
		printf("  stage %-8s %8.3f s  final loss %.6f\n", ffdp_stage_name(r.stages[k].kind), r.stages[k].seconds,
		       r.stages[k].final_loss);
	printf("  total          %8.3f s  final loss %.6f\n", r.seconds,
	       r.nstages ? r.stages[r.nstages - 1].final_loss : 0.0);
	double ncc = 0, ncc0 = 0;
	ffdp_mat4 id = ffdp_mat4_identity();
	if (warped_ncc(F, M, &id, NULL, &ncc0, &err) ||
	    warped_ncc(F, M, &r.T, r.has_warp ? &r.u : NULL, &ncc, &err)) {
		fprintf(stderr, "bench_register_gpu: warp/NCC: %s\n", err.msg);
		s = FFDP_ERR_BACKEND;
	}
	printf("  NCC(fixed, warped) %.4f (identity: %.4f)\n", ncc, ncc0);
	printf("  device memory: %.0f MiB before, peak %.0f MiB, peak - before %.0f MiB = %.1f B per fixed voxel%s\n",
	       mib(before), mib(p.peak), mib(p.peak - before),
	       (double)(p.peak - before) / (double)ffdp_grid_voxels(&F->grid), polling ? "" : " (no polling thread)");
	ffdp_reg_result_free(&r);
	return s != FFDP_OK;
}

int main(int argc, char **argv)
{
	const char *files[2] = {DATA "MNI152_T1_1mm_brain.nii.gz", DATA "t1_brain.nii.gz"};
	const char *presets[16];
	int npre = 0, nfiles = 0, up = 1, verbose = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--upsample") && i + 1 < argc)
			up = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--k") && i + 1 < argc)
			g_k = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ants"))
			g_ants = 1;
		else if (!strcmp(argv[i], "--full"))
			g_full = 1;
		else if (!strcmp(argv[i], "--f32"))
			g_f32 = 1;
		else if (!strcmp(argv[i], "--u16"))
			g_u16 = 1;
		else if (!strcmp(argv[i], "--no-inverse"))
			g_noinv = 1;
		else if (!strcmp(argv[i], "--anchor"))
			g_anchor = 1;
		else if (!strcmp(argv[i], "--verbose"))
			verbose = 1;
		else if (!strcmp(argv[i], "--finest") && i + 1 < argc)
			g_finest = atoi(argv[++i]);
		else if (is_preset(argv[i]) && npre < 16)
			presets[npre++] = argv[i];
		else if (!is_preset(argv[i]) && nfiles < 2)
			files[nfiles++] = argv[i];
		else {
			fprintf(stderr, "usage: bench_register_gpu [--upsample K] [--k K] [--ants] [--full] [--f32] [--u16] [--no-inverse] [--anchor] [--verbose] [--finest N] [fixed moving] [preset ...]\n");
			return 2;
		}
	}
	if (nfiles == 1) {
		fprintf(stderr, "bench_register_gpu: give both the fixed and the moving image\n");
		return 2;
	}
	if (!npre)
		presets[npre++] = "greedy", presets[npre++] = "syn";
	if (ffdp_cuda_device_count() < 1) {
		fprintf(stderr, "bench_register_gpu: no CUDA device\n");
		return 1;
	}
	ffdp_log_set_level(verbose ? FFDP_LOG_DEBUG : FFDP_LOG_WARN);
	ffdp_error err = {0};
	ffdp_volume F = {0}, M = {0};
	if (ffdp_image_read(files[0], FFDP_READ_REQUIRE_3D, &F, NULL, &err) ||
	    ffdp_image_read(files[1], FFDP_READ_REQUIRE_3D, &M, NULL, &err)) {
		fprintf(stderr, "bench_register_gpu: %s\n", err.msg);
		return 1;
	}
	if (up > 1 && (upsample(&F, up, &err) || upsample(&M, up, &err))) {
		fprintf(stderr, "bench_register_gpu: upsampling: %s\n", err.msg);
		return 1;
	}
	printf("fixed  %s  %lldx%lldx%lld\nmoving %s  %lldx%lldx%lld\n", files[0], (long long)F.grid.n[0],
	       (long long)F.grid.n[1], (long long)F.grid.n[2], files[1], (long long)M.grid.n[0],
	       (long long)M.grid.n[1], (long long)M.grid.n[2]);
	int bad = 0;
	for (int k = 0; k < npre; k++)
		bad |= run_preset(presets[k], &F, &M);
	ffdp_volume_free(&F), ffdp_volume_free(&M);
	return bad;
}

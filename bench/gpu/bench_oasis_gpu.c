/* OASIS-TRT-20 accuracy in one process, for parameter sweeps: register
 * subjects to subject 1 (no files written), warp the moving labels with the
 * label sampler, print mean Dice over the labels in both, folded voxels and
 * the registration time.
 *
 * usage: bench_oasis_gpu [--data DIR] [--cpu] [--preset syn|greedy]
 *                        [--lr X] [--sigma-grad X] [--sigma-warp X] [--k K]
 *                        [--iters A,B,C] [--inverse] [--f32] [--u16] SUBJECT...
 * --f32: Adam's moments in float (the presets' are bfloat16).
 * --u16: the images as unorm16 (ffdp_reg_opts.images16).
 * --inverse: also compute the inverse warp and print the mean inverse
 *            consistency both ways over the fixed labels (voxels).
 * The options change the deformable stage of the preset.
 * DIR holds oasis_trt20/ (default ../shared/data, else .devicedata). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ffdp/ffdp.h"

static int load(const char *dir, int s, const char *what, ffdp_volume *v, ffdp_error *err)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/oasis_trt20/subject_%d/%s", dir, s, what);
	return ffdp_image_read(p, 0, v, NULL, err) != FFDP_OK;
}

int main(int argc, char **argv)
{
	const char *dir = "../shared/data", *preset = "syn";
	struct stat st;
	if (stat(dir, &st) != 0)
		dir = ".devicedata";
	double lr = -1, sg = -1, sw = -1;
	int want_inv = 0, f32 = 0, u16 = 0;
	int kwin = 0, iters[8], ni = 0;
	ffdp_backend_kind kind = FFDP_BACKEND_CUDA;
	int subjects[16], ns = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--data") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--cpu"))
			kind = FFDP_BACKEND_CPU;
		else if (!strcmp(argv[i], "--preset") && i + 1 < argc)
			preset = argv[++i];
		else if (!strcmp(argv[i], "--lr") && i + 1 < argc)
			lr = atof(argv[++i]);
		else if (!strcmp(argv[i], "--sigma-grad") && i + 1 < argc)
			sg = atof(argv[++i]);
		else if (!strcmp(argv[i], "--sigma-warp") && i + 1 < argc)
			sw = atof(argv[++i]);
		else if (!strcmp(argv[i], "--k") && i + 1 < argc)
			kwin = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--f32"))
			f32 = 1;
		else if (!strcmp(argv[i], "--u16"))
			u16 = 1;
		else if (!strcmp(argv[i], "--inverse"))
			want_inv = 1;
		else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
			for (char *t = strtok(argv[++i], ","); t && ni < 8; t = strtok(NULL, ","))
				iters[ni++] = atoi(t);
		} else if (ns < 16 && atoi(argv[i]) > 1)
			subjects[ns++] = atoi(argv[i]);
		else {
			fprintf(stderr, "bench_oasis_gpu: bad argument %s\n", argv[i]);
			return 2;
		}
	}
	ffdp_log_set_level(FFDP_LOG_WARN);
	ffdp_error err = {0};
	ffdp_volume F = {0}, FL = {0};
	if (load(dir, 1, "t1weighted_brain.nii.gz", &F, &err) || load(dir, 1, "labels_dkt31_aseg.nii.gz", &FL, &err)) {
		fprintf(stderr, "bench_oasis_gpu: %s\n", err.msg);
		return 1;
	}
	ffdp_backend *cpu = NULL;
	ffdp_backend_open(FFDP_BACKEND_CPU, 0, &cpu, &err);
	ffdp_reg_opts o;
	if (ffdp_reg_preset(preset, &o, &err)) {
		fprintf(stderr, "bench_oasis_gpu: %s\n", err.msg);
		return 2;
	}
	ffdp_stage *d = &o.stages[o.nstages - 1];
	if (lr > 0)
		d->lr = lr;
	if (sg >= 0)
		d->sigma_grad = sg;
	if (sw >= 0)
		d->sigma_warp = sw;
	if (kwin > 0)
		d->metric.lncc_k = kwin;
	for (int l = 0; l < ni && l < d->nlevels; l++)
		d->iters[l] = iters[l];
	o.backend = kind;
	o.want_inverse = want_inv;
	if (f32)
		o.moments = FFDP_MOMENTS_F32;
	o.images16 = u16;
	printf("%s lr %.3g sigma_grad %.3g sigma_warp %.3g k %d iters", preset, d->lr, d->sigma_grad, d->sigma_warp,
	       d->metric.lncc_k);
	for (int l = 0; l < d->nlevels; l++)
		printf("%s%d", l ? "," : " ", d->iters[l]);
	printf(" moments %s images %s on %s\n", o.moments == FFDP_MOMENTS_BF16 ? "bf16" : "f32", u16 ? "u16" : "f32", kind == FFDP_BACKEND_CUDA ? "cuda" : "cpu");
	double sum_d = 0, sum_f = 0, sum_t = 0;
	int n = 0;
	for (int k = 0; k < ns; k++) {
		ffdp_volume M = {0}, ML = {0}, W = {0};
		ffdp_reg_result r;
		ffdp_label_eval e;
		ffdp_jacobian_stats js;
		if (load(dir, subjects[k], "t1weighted_brain.nii.gz", &M, &err) ||
		    load(dir, subjects[k], "labels_dkt31_aseg.nii.gz", &ML, &err) || ffdp_register(&F, &M, &o, &r, &err) ||
		    ffdp_warp_volume(cpu, &ML, &F.grid, &r.T, &r.u, FFDP_INTERP_LABEL, &W, &err) ||
		    ffdp_eval_labels(&FL, &W, 0, &e, &err) || ffdp_eval_jacobian(cpu, &r.u, &r.T, &js, &err)) {
			printf("%d->1 failed: %s\n", subjects[k], err.msg);
			continue;
		}
		printf("%d->1 dice %.4f folded %.4f %% det_min %.3f seconds %.3f", subjects[k], e.mean_dice,
		       100 * js.folded_fraction, js.det_min, r.seconds);
		double fi, ic;
		if (want_inv && r.has_inverse &&
		    !ffdp_eval_inverse_consistency(cpu, &r.u, &r.T, &r.u_inv, &FL, &fi, &ic, &err))
			printf(" fwd_o_inv %.4f inv_o_fwd %.4f voxel", fi, ic);
		printf("\n");
		fflush(stdout);
		sum_d += e.mean_dice, sum_f += 100 * js.folded_fraction, sum_t += r.seconds, n++;
		ffdp_label_eval_free(&e);
		ffdp_reg_result_free(&r);
		ffdp_volume_free(&M), ffdp_volume_free(&ML), ffdp_volume_free(&W);
	}
	if (n)
		printf("mean dice %.4f folded %.4f %% seconds %.3f over %d pairs\n", sum_d / n, sum_f / n, sum_t / n, n);
	ffdp_backend_close(cpu);
	return 0;
}

/* ffdp demo: the built-in default job, needing no input files. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static int parse_size(const char *s, int64_t n[3])
{
	long long a, b, c;
	char tail;
	int k = sscanf(s, "%lld,%lld,%lld%c", &a, &b, &c, &tail);
	if (k != 3 || a < 8 || b < 8 || c < 1 || a > 4096 || b > 4096 || c > 4096)
		return -1;
	n[0] = a, n[1] = b, n[2] = c;
	return 0;
}

static int write_all(const char *dir, const ffdp_volume *fixed, const ffdp_volume *moving,
		     const ffdp_volume *fl, const ffdp_volume *ml, const ffdp_field *truth, ffdp_error *err)
{
	char path[4096];
#define OUT(name) (snprintf(path, sizeof(path), "%s/%s", dir, name), path)
	if (ffdp_image_write(OUT("fixed.nii.gz"), fixed, FFDP_WRITE_FLOAT32, err) ||
	    ffdp_image_write(OUT("moving.nii.gz"), moving, FFDP_WRITE_FLOAT32, err) ||
	    ffdp_image_write(OUT("fixed_labels.nii.gz"), fl, FFDP_WRITE_LABEL16, err) ||
	    ffdp_image_write(OUT("moving_labels.nii.gz"), ml, FFDP_WRITE_LABEL16, err) ||
	    ffdp_field_write(OUT("true_warp.nii.gz"), truth, err) ||
	    ffdp_qc_write_png(OUT("demo_qc.png"), fixed, moving, FFDP_QC_OVERLAY, err))
		return 1;
#undef OUT
	return 0;
}

static double mean_dice(const ffdp_volume *a, const ffdp_volume *b, ffdp_error *err)
{
	ffdp_label_eval e;
	if (ffdp_eval_labels(a, b, 0, &e, err))
		return NAN;
	double d = e.mean_dice;
	ffdp_label_eval_free(&e);
	return d;
}

/* Register moving to fixed (moments, affine, greedy) and report what the
 * known truth says about it. */
static int demo_register(const char *dir, const ffdp_volume *fixed, const ffdp_volume *moving, const ffdp_volume *fl,
			 const ffdp_volume *ml, const ffdp_field *truth, ffdp_error *err)
{
	ffdp_reg_opts ro;
	ffdp_reg_result r;
	ffdp_backend *be = NULL;
	ffdp_volume warped = {0}, wl = {0};
	ffdp_field w = {0};
	char path[4096];
	int bad = ffdp_reg_preset("greedy", &ro, err) || ffdp_register(fixed, moving, &ro, &r, err);
	if (bad)
		return 1;
#define OUT(name) (snprintf(path, sizeof(path), "%s/%s", dir, name), path)
	bad = ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, err) ||
	      ffdp_warp_volume(be, moving, &fixed->grid, &r.T, &r.u, FFDP_INTERP_LINEAR, &warped, err) ||
	      ffdp_warp_volume(be, ml, &fixed->grid, &r.T, &r.u, FFDP_INTERP_LABEL, &wl, err) ||
	      ffdp_warp_to_ants(&r.u, &r.T, &w, err) ||
	      ffdp_image_write(OUT("reg_warped.nii.gz"), &warped, FFDP_WRITE_FLOAT32, err) ||
	      ffdp_affine_write(OUT("reg_affine.txt"), &r.T, err) ||
	      ffdp_field_write(OUT("reg_warp.nii.gz"), &w, err) ||
	      (r.has_inverse && ffdp_field_write(OUT("reg_inverse_warp.nii.gz"), &r.u_inv, err)) ||
	      ffdp_qc_write_png(OUT("reg_qc.png"), fixed, &warped, FFDP_QC_OVERLAY, err);
#undef OUT
	if (!bad) {
		ffdp_mat4 id = ffdp_mat4_identity();
		double e0 = NAN, e1 = NAN;
		ffdp_eval_endpoint_error(&id, NULL, truth, fl, &e0, err);
		ffdp_eval_endpoint_error(&r.T, &r.u, truth, fl, &e1, err);
		printf("demo: registered in %.2f s (%d thread%s)\n", r.seconds, ffdp_num_threads(),
		       ffdp_num_threads() == 1 ? "" : "s");
		printf("demo: mean label Dice %.3f before, %.3f after\n", mean_dice(fl, ml, err), mean_dice(fl, &wl, err));
		printf("demo: mean endpoint error inside the phantom %.3f voxel before, %.3f after\n",
		       e0, e1);
	}
	ffdp_reg_result_free(&r);
	ffdp_field_free(&w);
	ffdp_volume_free(&warped);
	ffdp_volume_free(&wl);
	ffdp_backend_close(be);
	return bad;
}

int ffdp_cmd_demo(int argc, char **argv)
{
	const char *dir = "ffdp-demo";
	ffdp_phantom_opts o = ffdp_phantom_defaults();
	o.amplitude_mm = 8.0; /* a deformation worth recovering: ~5 voxels at its peak */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-q") || !strcmp(a, "--quiet") || !strcmp(a, "-v") || !strcmp(a, "--verbose"))
			continue;
		if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
			if (!val)
				return ffdp_cli_usage("demo", "%s needs a directory", a);
			dir = val, i++;
		} else if (!strcmp(a, "--size")) {
			if (!val || parse_size(val, o.n))
				return ffdp_cli_usage("demo", "--size wants NX,NY,NZ (8..4096; NZ = 1 for 2-D)");
			i++;
		} else if (!strcmp(a, "--spacing")) {
			double s;
			if (!val || ffdp_cli_parse_f64(val, 1e-3, 100, &s))
				return ffdp_cli_usage("demo", "--spacing wants a voxel size in mm");
			o.spacing[0] = o.spacing[1] = o.spacing[2] = s, i++;
		} else if (!strcmp(a, "--amplitude")) {
			if (!val || ffdp_cli_parse_f64(val, 0, 30, &o.amplitude_mm))
				return ffdp_cli_usage("demo", "--amplitude wants a peak displacement in mm (0..30)");
			i++;
		} else if (!strcmp(a, "--seed")) {
			long long s;
			if (!val || ffdp_cli_parse_i64(val, 0, 1LL << 62, &s))
				return ffdp_cli_usage("demo", "--seed wants a non-negative integer");
			o.seed = (uint64_t)s, i++;
		} else {
			return ffdp_cli_usage("demo", "unknown option '%s'", a);
		}
	}
	if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
		ffdp_log_error("cannot create output directory %s: %s", dir, strerror(errno));
		return 1;
	}

	ffdp_error err = {0};
	ffdp_volume fixed = {0}, moving = {0}, fl = {0}, ml = {0};
	ffdp_field truth = {0};
	double t0 = ffdp_now();
	ffdp_log_info("demo: phantom %lldx%lldx%lld at %.3g mm, deformation up to %.3g mm", (long long)o.n[0],
		      (long long)o.n[1], (long long)o.n[2], o.spacing[0], o.amplitude_mm);
	int rc = 0;
	if (ffdp_phantom_make(&o, &fixed, &moving, &fl, &ml, &truth, &err) ||
	    write_all(dir, &fixed, &moving, &fl, &ml, &truth, &err) ||
	    demo_register(dir, &fixed, &moving, &fl, &ml, &truth, &err)) {
		rc = ffdp_cli_fail(&err);
	} else {
		printf("demo: wrote %s/: inputs {fixed,moving}{,_labels}.nii.gz, true_warp.nii.gz, demo_qc.png;\n"
		       "      registration reg_{warped,warp,inverse_warp}.nii.gz, reg_affine.txt, reg_qc.png\n",
		       dir);
		printf("demo: %.2f s in all\n", ffdp_now() - t0);
	}
	ffdp_volume_free(&fixed);
	ffdp_volume_free(&moving);
	ffdp_volume_free(&fl);
	ffdp_volume_free(&ml);
	ffdp_field_free(&truth);
	return rc;
}

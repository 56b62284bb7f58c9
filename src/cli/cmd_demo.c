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

int ffdp_cmd_demo(int argc, char **argv)
{
	const char *dir = "ffdp-demo";
	ffdp_phantom_opts o = ffdp_phantom_defaults();
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
	    write_all(dir, &fixed, &moving, &fl, &ml, &truth, &err)) {
		rc = ffdp_cli_fail(&err);
	} else {
		double umax = 0;
		int64_t n = ffdp_grid_voxels(&truth.grid);
		for (int64_t i = 0; i < n; i++) {
			double s = 0;
			for (int c = 0; c < truth.ncomp; c++)
				s += (double)truth.c[c][i] * truth.c[c][i];
			umax = fmax(umax, sqrt(s));
		}
		printf("demo: wrote %s/{fixed,moving,fixed_labels,moving_labels,true_warp}.nii.gz and %s/demo_qc.png\n",
		       dir, dir);
		printf("demo: true displacement up to %.2f mm; %.2f s\n", umax, ffdp_now() - t0);
	}
	ffdp_volume_free(&fixed);
	ffdp_volume_free(&moving);
	ffdp_volume_free(&fl);
	ffdp_volume_free(&ml);
	ffdp_field_free(&truth);
	return rc;
}

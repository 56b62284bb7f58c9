/* ffdp info FILE...: what a user checks before registering. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void print_info(const char *path, const ffdp_grid *g, const ffdp_image_info *in, int have_range)
{
	printf("%s\n", path);
	if (in->ndim > 3) {
		printf("  dims:        %d-D:", in->ndim);
		for (int i = 0; i < in->ndim && i < 7; i++)
			printf(" %lld", (long long)in->dims[i]);
		printf("\n");
	}
	printf("  size:        %lld x %lld x %lld\n", (long long)g->n[0], (long long)g->n[1], (long long)g->n[2]);
	printf("  voxel size:  %.6g x %.6g x %.6g mm\n", g->spacing[0], g->spacing[1], g->spacing[2]);
	printf("  orientation: %s\n", in->orientation);
	printf("  datatype:    %s", in->datatype_name);
	if (in->scl_slope != 0.0 && (in->scl_slope != 1.0 || in->scl_inter != 0.0))
		printf(" (scaled: slope %.6g, inter %.6g)", in->scl_slope, in->scl_inter);
	printf("\n");
	printf("  geometry:    %s (qform_code %d, sform_code %d), NIfTI-%d\n", in->geometry_from, in->qform_code,
	       in->sform_code, in->nifti_version);
	printf("  origin:      %.6g %.6g %.6g mm (LPS)\n", g->origin[0], g->origin[1], g->origin[2]);
	printf("  direction:   [%.4f %.4f %.4f; %.4f %.4f %.4f; %.4f %.4f %.4f]\n", g->dir[0], g->dir[1], g->dir[2],
	       g->dir[3], g->dir[4], g->dir[5], g->dir[6], g->dir[7], g->dir[8]);
	if (have_range)
		printf("  range:       %.6g .. %.6g\n", in->intensity_min, in->intensity_max);
}

int ffdp_cmd_info(int argc, char **argv)
{
	int nfiles = 0, nfailed = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-q") || !strcmp(a, "--quiet") || !strcmp(a, "-v") || !strcmp(a, "--verbose"))
			continue;
		if (a[0] == '-' && a[1])
			return ffdp_cli_usage("info", "unknown option '%s'", a);
		nfiles++;
		ffdp_error err = {0};
		ffdp_grid g;
		ffdp_image_info in;
		if (ffdp_image_read_header(a, &g, &in, &err) != FFDP_OK) {
			ffdp_cli_fail(&err);
			nfailed++;
			continue;
		}
		/* Intensities only for scalar images; vector fields and series get the header. */
		int have_range = 0;
		int scalar = in.ndim <= 3 || (in.dims[3] <= 1 && (in.ndim < 5 || in.dims[4] <= 1));
		if (scalar) {
			ffdp_volume v = {0};
			if (ffdp_image_read(a, FFDP_READ_ALLOW_NONFINITE, &v, &in, &err) != FFDP_OK) {
				ffdp_cli_fail(&err);
				nfailed++;
				continue;
			}
			have_range = 1;
			ffdp_volume_free(&v);
		}
		if (nfiles > 1)
			printf("\n");
		print_info(a, &g, &in, have_range);
	}
	if (nfiles == 0)
		return ffdp_cli_usage("info", "no input file");
	return nfailed ? 1 : 0;
}

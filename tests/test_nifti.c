/* NIfTI images: write/read round trips on random oblique grids, every
 * datatype written independently with nifti_clib, NIfTI-2, 2-D and 4-D
 * files, ITK's qform/sform choice, NaN voxels, and failed writes that must
 * leave nothing behind. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nifti2_io.h>
#include <zlib.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static char g_dir[1024];

/* Files in the test directory whose name marks them as writer temporaries. */
static double max_geom_diff(const ffdp_grid *a, const ffdp_grid *b, double *dorigin, double *ddir,
			    double *dspacing)
{
	*dorigin = *ddir = *dspacing = 0;
	for (int i = 0; i < 3; i++) {
		*dorigin = fmax(*dorigin, fabs(a->origin[i] - b->origin[i]));
		*dspacing = fmax(*dspacing, fabs(a->spacing[i] - b->spacing[i]) / b->spacing[i]);
	}
	for (int i = 0; i < 9; i++)
		*ddir = fmax(*ddir, fabs(a->dir[i] - b->dir[i]));
	return fmax(*dorigin, fmax(*ddir, *dspacing));
}

static int same_size(const ffdp_grid *a, const ffdp_grid *b)
{
	return a->n[0] == b->n[0] && a->n[1] == b->n[1] && a->n[2] == b->n[2];
}

/* ---- float32 / int16 / uint8 / label round trips ---- */

static void test_float_round_trip(tu_rng *r)
{
	static const int64_t sizes[4][3] = {{17, 13, 11}, {9, 21, 7}, {32, 8, 5}, {6, 6, 6}};
	ffdp_error err = {0};
	for (int t = 0; t < 4; t++) {
		ffdp_volume v = {0}, back = {0};
		ffdp_grid g = tu_random_grid(r, sizes[t][0], sizes[t][1], sizes[t][2]);
		if (t == 3) /* an improper direction (det < 0): the qform needs qfac = -1 */
			for (int row = 0; row < 3; row++)
				g.dir[3 * row + 2] = -g.dir[3 * row + 2];
		ffdp_volume_alloc(&v, &g, &err);
		tu_fill_uniform(r, v.data, ffdp_grid_voxels(&g), -1000, 1000);
		for (int gz = 0; gz < 2; gz++) {
			char path[1200];
			char name[64];
			snprintf(name, sizeof(name), "float_%d.nii%s", t, gz ? ".gz" : "");
			tu_path(path, 1200, g_dir, name);
			ffdp_image_info info;
			CHECK_OK(ffdp_image_write(path, &v, FFDP_WRITE_FLOAT32, &err), &err,
				 "write float32 %s", name);
			CHECK_OK(ffdp_image_read(path, 0, &back, &info, &err), &err, "read %s back", name);
			if (!back.data)
				continue;
			int64_t n = ffdp_grid_voxels(&g);
			CHECK(same_size(&back.grid, &g) && memcmp(back.data, v.data, (size_t)n * 4) == 0,
			      "%s: %lld voxels bit-exact", name, (long long)n);
			double dorig, ddir, dsp;
			max_geom_diff(&back.grid, &g, &dorig, &ddir, &dsp);
			CHECK(dorig <= 1e-6 && ddir <= 1e-6 && dsp <= 1e-6,
			      "%s: geometry |d origin| = %.2g mm, |d dir| = %.2g, rel d spacing = %.2g (<= "
			      "1e-6)",
			      name, dorig, ddir, dsp);
			CHECK(!strcmp(info.geometry_from, "sform") && info.qform_code == 1 &&
				  info.sform_code == 1 && info.nifti_version == 1 &&
				  info.datatype == DT_FLOAT32 && !strcmp(info.datatype_name, "float32"),
			      "%s: info says sform (codes %d/%d), NIfTI-%d, %s", name, info.qform_code,
			      info.sform_code, info.nifti_version, info.datatype_name);
			float lo, hi;
			ffdp_volume_range(&v, &lo, &hi);
			CHECK(info.intensity_min == lo && info.intensity_max == hi, "%s: range %g .. %g",
			      name, info.intensity_min, info.intensity_max);
			/* The qform, read by nifti_clib itself, must describe the same grid. */
			nifti_image *nim = nifti_image_read(path, 0);
			double qs = 0;
			for (int i = 0; nim && i < 3; i++)
				for (int j = 0; j < 4; j++)
					qs = fmax(qs, fabs(nim->qto_xyz.m[i][j] - nim->sto_xyz.m[i][j]));
			CHECK(nim && qs < 2e-5 && nim->qfac == (t == 3 ? -1.0 : 1.0) &&
				  nim->xyz_units == NIFTI_UNITS_MM,
			      "%s: qform = sform within %.1e (qfac %g), units mm", name, qs,
			      nim ? nim->qfac : 0.0);
			nifti_image_free(nim);
			ffdp_volume_free(&back);
		}
		ffdp_volume_free(&v);
	}
}

static double max_abs_diff(const float *a, const float *b, int64_t n)
{
	double d = 0;
	for (int64_t i = 0; i < n; i++)
		d = fmax(d, fabs((double)a[i] - b[i]));
	return d;
}

static void test_scaled(tu_rng *r)
{
	ffdp_error err = {0};
	ffdp_grid g = tu_random_grid(r, 19, 17, 13);
	ffdp_volume v = {0}, back = {0};
	ffdp_volume_alloc(&v, &g, &err);
	int64_t n = ffdp_grid_voxels(&g);
	char path[1200];
	ffdp_image_info info;

	tu_fill_uniform(r, v.data, n, -3.7, 1234.5);
	CHECK_OK(ffdp_image_write(tu_path(path, 1200, g_dir, "scaled_i16.nii.gz"), &v, FFDP_WRITE_INT16, &err), &err,
		 "write int16");
	CHECK_OK(ffdp_image_read(path, 0, &back, &info, &err), &err, "read int16 back");
	double d = back.data ? max_abs_diff(back.data, v.data, n) : INFINITY;
	CHECK(info.datatype == DT_INT16 && info.scl_slope > 0 &&
		  d <= 0.5 * info.scl_slope * (1 + 1e-6) + 1e-4,
	      "int16 scaled: max error %.3g <= slope/2 = %.3g (slope %.3g, inter %.3g)", d,
	      0.5 * info.scl_slope, info.scl_slope, info.scl_inter);
	CHECK(info.scl_slope < 1234.5 * 2 / 65000.0, "int16 slope %.3g uses the whole int16 range",
	      info.scl_slope);
	ffdp_volume_free(&back);

	CHECK_OK(ffdp_image_write(tu_path(path, 1200, g_dir, "scaled_u8.nii"), &v, FFDP_WRITE_UINT8, &err), &err,
		 "write uint8");
	CHECK_OK(ffdp_image_read(path, 0, &back, &info, &err), &err, "read uint8 back");
	d = back.data ? max_abs_diff(back.data, v.data, n) : INFINITY;
	CHECK(info.datatype == DT_UINT8 && d <= 0.5 * info.scl_slope * (1 + 1e-6) + 1e-4,
	      "uint8 scaled: max error %.3g <= slope/2 = %.3g", d, 0.5 * info.scl_slope);
	ffdp_volume_free(&back);

	/* Whole numbers that fit are stored unscaled, so exactly. */
	for (int64_t i = 0; i < n; i++)
		v.data[i] = (float)((i * 37) % 3001 - 1500);
	CHECK_OK(ffdp_image_write(tu_path(path, 1200, g_dir, "int_i16.nii"), &v, FFDP_WRITE_INT16, &err), &err,
		 "write integer int16");
	CHECK_OK(ffdp_image_read(path, 0, &back, &info, &err), &err, "read integer int16");
	CHECK(back.data && max_abs_diff(back.data, v.data, n) == 0 && info.scl_slope == 1 &&
		  info.scl_inter == 0,
	      "int16 of whole numbers: exact, slope %g inter %g", info.scl_slope, info.scl_inter);
	ffdp_volume_free(&back);

	/* Labels: rounded, never scaled; int32 when they do not fit int16. */
	for (int64_t i = 0; i < n; i++)
		v.data[i] = (float)((i * 7919) % 2036);
	v.data[5] = 17.4f; /* rounds to 17 */
	CHECK_OK(ffdp_image_write(tu_path(path, 1200, g_dir, "labels.nii.gz"), &v, FFDP_WRITE_LABEL16, &err), &err,
		 "write labels");
	CHECK_OK(ffdp_image_read(path, 0, &back, &info, &err), &err, "read labels");
	v.data[5] = 17.0f;
	CHECK(back.data && max_abs_diff(back.data, v.data, n) == 0 && info.datatype == DT_INT16,
	      "LABEL16: labels 0..2035 exact as %s", info.datatype_name);
	ffdp_volume_free(&back);
	v.data[7] = 70000.0f;
	v.data[8] = -5.0f;
	CHECK_OK(ffdp_image_write(tu_path(path, 1200, g_dir, "labels32.nii"), &v, FFDP_WRITE_LABEL16, &err), &err,
		 "write big labels");
	CHECK_OK(ffdp_image_read(path, 0, &back, &info, &err), &err, "read big labels");
	CHECK(back.data && max_abs_diff(back.data, v.data, n) == 0 && info.datatype == DT_INT32,
	      "LABEL16 with label 70000: exact as %s", info.datatype_name);
	ffdp_volume_free(&back);
	v.data[7] = 3e9f;
	ffdp_status s = ffdp_image_write(tu_path(path, 1200, g_dir, "labels_huge.nii"), &v, FFDP_WRITE_LABEL16, &err);
	CHECK(s == FFDP_ERR_DATA && strstr(err.msg, "labels_huge.nii") && access(path, F_OK) != 0,
	      "label 3e9 refused, no file: %s", err.msg);
	ffdp_volume_free(&v);
}

/* ---- files written with nifti_clib directly ---- */

typedef struct raw_spec {
	int64_t dims[8];
	int dt;
	double slope, inter;
	int qcode, scode;
	const double *q; /* 3x4 RAS matrix for the qform (row-major), or NULL */
	const double *s; /* 3x4 RAS matrix for the sform, or NULL */
	double pixdim[3];
} raw_spec;

static nifti_dmat44 dmat(const double *m)
{
	nifti_dmat44 d;
	memset(&d, 0, sizeof(d));
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 4; c++)
			d.m[r][c] = m[4 * r + c];
	d.m[3][3] = 1;
	return d;
}

/* Stored value number i of a test file: small, signed when the type is. */
static double raw_value(int dt, int64_t i)
{
	switch (dt) {
	case DT_UINT8:
	case DT_UINT16:
	case DT_UINT32:
	case DT_UINT64: return (double)(i % 11);
	case DT_FLOAT32:
	case DT_FLOAT64: return 0.25 * (double)(i % 13) - 1.5;
	default: return (double)(i % 11) - 5;
	}
}

static void fill_raw(nifti_image *nim)
{
	for (int64_t i = 0; i < nim->nvox; i++) {
		double v = raw_value(nim->datatype, i);
		tu_nifti_store(nim->datatype, nim->data, i, v);
	}
}

static void write_raw(const char *path, const raw_spec *sp)
{
	nifti_image *nim = nifti_make_new_nim(sp->dims, sp->dt, 1);
	fill_raw(nim);
	nim->scl_slope = sp->slope, nim->scl_inter = sp->inter;
	for (int i = 0; i < 3; i++)
		nim->pixdim[i + 1] = sp->pixdim[i] > 0 ? sp->pixdim[i] : 1.0;
	nim->qform_code = sp->qcode, nim->sform_code = sp->scode;
	if (sp->q) {
		double dx, dy, dz;
		nifti_dmat44_to_quatern(dmat(sp->q), &nim->quatern_b, &nim->quatern_c, &nim->quatern_d,
					&nim->qoffset_x, &nim->qoffset_y, &nim->qoffset_z, &dx, &dy, &dz,
					&nim->qfac);
		nim->pixdim[1] = dx, nim->pixdim[2] = dy, nim->pixdim[3] = dz;
	}
	nim->dx = nim->pixdim[1], nim->dy = nim->pixdim[2], nim->dz = nim->pixdim[3];
	if (sp->s)
		nim->sto_xyz = dmat(sp->s);
	free(nim->fname);
	free(nim->iname);
	nim->fname = nifti_strdup(path);
	nim->iname = nifti_strdup(path);
	nim->nifti_type = NIFTI_FTYPE_NIFTI1_1;
	nifti_image_write(nim);
	nifti_image_free(nim);
}

static void test_datatypes(void)
{
	static const int types[] = {DT_UINT8, DT_INT8,   DT_UINT16, DT_INT16,   DT_UINT32,
				    DT_INT32, DT_UINT64, DT_INT64,  DT_FLOAT32, DT_FLOAT64};
	static const char *names[] = {"uint8", "int8",   "uint16", "int16",   "uint32",
				      "int32", "uint64", "int64",  "float32", "float64"};
	ffdp_error err = {0};
	char path[1200], name[64];
	for (int t = 0; t < 10; t++) {
		raw_spec sp = {{3, 5, 4, 3, 1, 1, 1, 1}, types[t], 2.0, -3.0, 0, 0, NULL, NULL,
			       {1.5, 2.0, 2.5}};
		snprintf(name, sizeof(name), "raw_%s.nii%s", names[t], t % 2 ? ".gz" : "");
		write_raw(tu_path(path, 1200, g_dir, name), &sp);
		ffdp_volume v = {0};
		ffdp_image_info info;
		CHECK_OK(ffdp_image_read(path, 0, &v, &info, &err), &err, "read %s", name);
		if (!v.data)
			continue;
		double worst = 0;
		for (int64_t i = 0; i < 60; i++)
			worst = fmax(worst, fabs(v.data[i] - (2.0 * raw_value(types[t], i) - 3.0)));
		CHECK(worst == 0 && !strcmp(info.datatype_name, names[t]),
		      "%s: 60 values = 2*stored - 3 exactly (max error %g), datatype_name %s", name, worst,
		      info.datatype_name);
		/* Both codes 0: ITK's fallback, pixdim spacing, identity LPS direction, origin 0. */
		ffdp_grid e = ffdp_grid_make(5, 4, 3, 1.5, 2.0, 2.5);
		double dorig, ddir, dsp;
		max_geom_diff(&v.grid, &e, &dorig, &ddir, &dsp);
		CHECK(dorig == 0 && ddir == 0 && dsp < 1e-7 && !strcmp(info.geometry_from, "none") &&
			  !strcmp(info.orientation, "LPS"),
		      "%s: no qform/sform -> pixdim spacing, identity, origin 0, %s, orientation %s", name,
		      info.geometry_from, info.orientation);
		ffdp_volume_free(&v);
	}
	/* Values near the type limits survive the conversion. */
	raw_spec sp = {{3, 2, 1, 1, 1, 1, 1, 1}, DT_UINT32, 0, 0, 0, 0, NULL, NULL, {1, 1, 1}};
	nifti_image *nim = nifti_make_new_nim(sp.dims, DT_UINT32, 1);
	((uint32_t *)nim->data)[0] = 4000000000u;
	((uint32_t *)nim->data)[1] = 7;
	free(nim->fname), free(nim->iname);
	nim->fname = nifti_strdup(tu_path(path, 1200, g_dir, "u32max.nii")), nim->iname = nifti_strdup(path);
	nifti_image_write(nim);
	nifti_image_free(nim);
	ffdp_volume v = {0};
	ffdp_image_info info;
	CHECK_OK(ffdp_image_read(path, 0, &v, &info, &err), &err, "read uint32 4e9");
	CHECK(v.data && v.data[0] == 4e9f && v.data[1] == 7.0f && info.scl_slope == 0,
	      "uint32 4000000000 and 7 read as %.10g, %g (slope 0 = unscaled)", v.data ? v.data[0] : 0.0,
	      v.data ? v.data[1] : 0.0);
	ffdp_volume_free(&v);

	static const int refused[] = {DT_COMPLEX64, DT_RGB24};
	for (int t = 0; t < 2; t++) {
		raw_spec rs = {{3, 4, 3, 2, 1, 1, 1, 1}, refused[t], 0, 0, 0, 0, NULL, NULL, {1, 1, 1}};
		snprintf(name, sizeof(name), "raw_refused_%d.nii", t);
		write_raw(tu_path(path, 1200, g_dir, name), &rs);
		ffdp_status s = ffdp_image_read(path, 0, &v, NULL, &err);
		CHECK(s == FFDP_ERR_FORMAT && strstr(err.msg, name) &&
			  strstr(err.msg, t ? "rgb24" : "complex64") && !v.data,
		      "%s refused: %s", t ? "rgb24" : "complex64", err.msg);
	}
}

/* nifti_clib 3.0.1 cannot write NIfTI-2 single files (it puts the data over
 * the header), so this one is assembled by hand: 6x5x4 int16, sform code 1
 * with RAS rows (-0.9 0 0 10), (0 1.1 0 -20), (0 0 1.3 30). */
static void write_nifti2_by_hand(const char *path)
{
	nifti_2_header h;
	memset(&h, 0, sizeof(h));
	h.sizeof_hdr = 540;
	memcpy(h.magic, "n+2\0\r\n\032\n", 8);
	h.datatype = DT_INT16, h.bitpix = 16;
	int64_t dim[8] = {3, 6, 5, 4, 1, 1, 1, 1};
	double pixdim[8] = {1, 0.9, 1.1, 1.3, 1, 1, 1, 1};
	memcpy(h.dim, dim, sizeof(dim));
	memcpy(h.pixdim, pixdim, sizeof(pixdim));
	h.vox_offset = 544;
	h.sform_code = 1;
	double sx[4] = {-0.9, 0, 0, 10}, sy[4] = {0, 1.1, 0, -20}, sz[4] = {0, 0, 1.3, 30};
	memcpy(h.srow_x, sx, sizeof(sx)), memcpy(h.srow_y, sy, sizeof(sy)), memcpy(h.srow_z, sz, sizeof(sz));
	h.xyzt_units = NIFTI_UNITS_MM;
	int16_t data[120];
	for (int i = 0; i < 120; i++)
		data[i] = (int16_t)raw_value(DT_INT16, i);
	FILE *f = fopen(path, "wb");
	fwrite(&h, sizeof(h), 1, f);
	fwrite("\0\0\0\0", 1, 4, f);
	fwrite(data, sizeof(data), 1, f);
	fclose(f);
}

static void test_nifti2_2d_4d(tu_rng *r)
{
	ffdp_error err = {0};
	char path[1200];
	ffdp_image_info info;
	ffdp_volume v = {0}, back = {0};

	/* A dimension over 32767 forces NIfTI-2. */
	ffdp_grid g = tu_random_grid(r, 32768, 2, 1);
	ffdp_volume_alloc(&v, &g, &err);
	tu_fill_uniform(r, v.data, ffdp_grid_voxels(&g), -1, 1);
	CHECK_OK(ffdp_image_write(tu_path(path, 1200, g_dir, "wide.nii.gz"), &v, FFDP_WRITE_FLOAT32, &err), &err,
		 "write 32768x2");
	unsigned char head[12] = {0};
	gzFile gzf = gzopen(path, "rb");
	int nread = gzf ? gzread(gzf, head, sizeof(head)) : -1;
	if (gzf)
		gzclose(gzf);
	int32_t hsize;
	memcpy(&hsize, head, 4);
	CHECK(nread == 12 && hsize == 540 && memcmp(head + 4, "n+2\0\r\n\032\n", 8) == 0,
	      "32768 x 2 image written as NIfTI-2 (sizeof_hdr %d, magic n+2)", (int)hsize);
	nifti_image *nim;
	CHECK_OK(ffdp_image_read(path, 0, &back, &info, &err), &err, "read NIfTI-2 back");
	CHECK(back.data && info.nifti_version == 2 && memcmp(back.data, v.data, 32768 * 2 * 4) == 0,
	      "NIfTI-2: version %d, data bit-exact", info.nifti_version);
	ffdp_volume_free(&back);
	ffdp_volume_free(&v);

	/* A NIfTI-2 file built field by field from the format definition, sform only. */
	write_nifti2_by_hand(tu_path(path, 1200, g_dir, "hand_nifti2.nii"));
	CHECK_OK(ffdp_image_read(path, 0, &back, &info, &err), &err, "read a hand-made NIfTI-2 file");
	CHECK(back.data && info.nifti_version == 2 && back.data[3] == (float)raw_value(DT_INT16, 3) &&
		  fabs(back.grid.origin[0] + 10) < 1e-9 && fabs(back.grid.spacing[0] - 0.9) < 1e-6 &&
		  !strcmp(info.orientation, "LAS"),
	      "NIfTI-2 file: version %d, origin x %g (LPS), spacing %g, %s", info.nifti_version,
	      back.grid.origin[0], back.grid.spacing[0], info.orientation);
	ffdp_volume_free(&back);

	/* 2-D: nz = 1, dim[0] = 2 on disk. */
	g = tu_random_grid(r, 23, 17, 1);
	ffdp_volume_alloc(&v, &g, &err);
	tu_fill_uniform(r, v.data, ffdp_grid_voxels(&g), 0, 5);
	CHECK_OK(ffdp_image_write(tu_path(path, 1200, g_dir, "flat.nii"), &v, FFDP_WRITE_FLOAT32, &err), &err,
		 "write 2-D image");
	nim = nifti_image_read(path, 0);
	CHECK(nim && nim->dim[0] == 2 && nim->nx == 23 && nim->ny == 17,
	      "2-D image stored with dim[0] = %lld", nim ? (long long)nim->dim[0] : -1LL);
	nifti_image_free(nim);
	CHECK_OK(ffdp_image_read(path, 0, &back, &info, &err), &err, "read 2-D image");
	double dorig, ddir, dsp;
	if (back.data)
		max_geom_diff(&back.grid, &g, &dorig, &ddir, &dsp);
	CHECK(back.data && back.grid.n[2] == 1 && memcmp(back.data, v.data, 23 * 17 * 4) == 0 &&
		  dorig <= 1e-6 && ddir <= 1e-6,
	      "2-D round trip: nz = 1, data exact, geometry within 1e-6");
	ffdp_volume_free(&back);
	ffdp_status s = ffdp_image_read(path, FFDP_READ_REQUIRE_3D, &back, NULL, &err);
	CHECK(s == FFDP_ERR_DATA && strstr(err.msg, "flat.nii") && strstr(err.msg, "2-D"),
	      "REQUIRE_3D refuses the 2-D image: %s", err.msg);
	ffdp_volume_free(&v);

	/* 4-D: t = 1 is a 3-D image, t = 3 is refused where 3-D is required. */
	raw_spec sp4 = {{4, 5, 4, 3, 1, 1, 1, 1}, DT_FLOAT32, 0, 0, 0, 0, NULL, NULL, {1, 1, 1}};
	write_raw(tu_path(path, 1200, g_dir, "t1.nii.gz"), &sp4);
	CHECK_OK(ffdp_image_read(path, FFDP_READ_REQUIRE_3D, &back, &info, &err), &err,
		 "4-D file with t = 1 accepted");
	CHECK(back.data && back.grid.n[2] == 3 && info.ndim == 4, "t = 1: read as 5 x 4 x 3 (dim[0] = %d)",
	      info.ndim);
	ffdp_volume_free(&back);
	sp4.dims[4] = 3;
	write_raw(tu_path(path, 1200, g_dir, "t3.nii.gz"), &sp4);
	s = ffdp_image_read(path, 0, &back, NULL, &err);
	CHECK(s == FFDP_ERR_DATA &&
		  strstr(err.msg, "t3.nii.gz: 4-D image (t = 3) where a 3-D image is required") && !back.data,
	      "t = 3 refused: %s", err.msg);
	ffdp_grid hg;
	CHECK_OK(ffdp_image_read_header(path, &hg, &info, &err), &err, "header of the 4-D file still reads");
	CHECK(info.ndim == 4 && info.dims[3] == 3 && hg.n[2] == 3, "header: dim[0] = %d, t = %lld", info.ndim,
	      (long long)info.dims[3]);
}

/* ---- qform / sform choice (ITK 5.x rule, see src/io/nifti_geometry.c) ---- */

/* Expected LPS grid of a RAS 3x4 matrix: flip x and y rows, norms, unit columns. */
static ffdp_grid grid_of_ras(const double *m, int64_t nx, int64_t ny, int64_t nz)
{
	ffdp_grid g = ffdp_grid_make(nx, ny, nz, 1, 1, 1);
	for (int c = 0; c < 3; c++) {
		double col[3] = {-m[c], -m[4 + c], m[8 + c]};
		double n = sqrt(col[0] * col[0] + col[1] * col[1] + col[2] * col[2]);
		g.spacing[c] = n;
		for (int r = 0; r < 3; r++)
			g.dir[3 * r + c] = col[r] / n;
	}
	g.origin[0] = -m[3], g.origin[1] = -m[7], g.origin[2] = m[11];
	return g;
}

static void ras_of_grid(const ffdp_grid *g, double m[12])
{
	ffdp_mat4 a = ffdp_grid_index_to_phys(g);
	for (int i = 0; i < 12; i++)
		m[i] = (i < 8 ? -1 : 1) * a.m[i];
}

static void check_choice(const char *name, const raw_spec *sp, const char *want_from, const double *want_m)
{
	char path[1200];
	ffdp_error err = {0};
	ffdp_grid g;
	ffdp_image_info info;
	write_raw(tu_path(path, 1200, g_dir, name), sp);
	CHECK_OK(ffdp_image_read_header(path, &g, &info, &err), &err, "%s: header reads", name);
	ffdp_grid e = grid_of_ras(want_m, sp->dims[1], sp->dims[2], sp->dims[3]);
	double dorig, ddir, dsp;
	max_geom_diff(&g, &e, &dorig, &ddir, &dsp);
	CHECK(!strcmp(info.geometry_from, want_from) && dorig < 1e-5 && ddir < 1e-5 && dsp < 1e-5,
	      "%s (qform_code %d, sform_code %d): uses the %s (%s), geometry within %.1e", name, sp->qcode,
	      sp->scode, want_from, info.geometry_from, fmax(dorig, fmax(ddir, dsp)));
}

static void test_qform_sform(tu_rng *r)
{
	double Q[12], S[12], near[12];
	ffdp_grid gq = tu_random_grid(r, 7, 6, 5), gs = tu_random_grid(r, 7, 6, 5);
	ras_of_grid(&gq, Q);
	ras_of_grid(&gs, S);
	memcpy(near, Q, sizeof(near));
	near[3] += 5e-5; /* within ITK's 1e-4 "very similar", outside its 1e-7 "similar" */
	raw_spec sp = {{3, 7, 6, 5, 1, 1, 1, 1}, DT_FLOAT32, 0, 0, 0, 0, NULL, NULL, {1, 1, 1}};

	sp.qcode = 1, sp.scode = 0, sp.q = Q, sp.s = NULL;
	check_choice("qform_only.nii", &sp, "qform", Q);
	sp.qcode = 0, sp.scode = 2, sp.q = NULL, sp.s = S;
	check_choice("sform_only.nii", &sp, "sform", S);
	sp.qcode = 1, sp.scode = 1, sp.q = Q, sp.s = S;
	check_choice("both_differ_scanner.nii", &sp, "sform", S); /* sform_code 1 (scanner) wins */
	sp.qcode = 1, sp.scode = 2, sp.q = Q, sp.s = S;
	check_choice("both_differ_aligned.nii", &sp, "qform", Q); /* not very similar: qform */
	sp.qcode = 2, sp.scode = 2, sp.q = Q, sp.s = near;
	check_choice("both_very_similar.nii", &sp, "sform", near); /* very similar: sform's precision */

	/* A sheared sform is not "decomposable": the qform is used. */
	double sheared[12];
	memcpy(sheared, S, sizeof(sheared));
	sheared[1] += 0.2 * S[0], sheared[5] += 0.2 * S[4], sheared[9] += 0.2 * S[8];
	sp.qcode = 1, sp.scode = 1, sp.q = Q, sp.s = sheared;
	check_choice("sheared_sform_with_qform.nii", &sp, "qform", Q);

	/* Slight shear (beyond ITK's 1e-4, within 1e-3) and no qform: orthonormalised sform. */
	double slight[12];
	memcpy(slight, S, sizeof(slight));
	slight[1] += 4e-4 * S[0], slight[5] += 4e-4 * S[4], slight[9] += 4e-4 * S[8];
	sp.qcode = 0, sp.scode = 1, sp.q = NULL, sp.s = slight;
	char path[1200];
	ffdp_error err = {0};
	ffdp_grid g;
	ffdp_image_info info;
	write_raw(tu_path(path, 1200, g_dir, "slight_shear.nii"), &sp);
	CHECK_OK(ffdp_image_read_header(path, &g, &info, &err), &err,
		 "slightly sheared sform, no qform: reads");
	double orth = 0, dd = 0;
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++) {
			double s = 0;
			for (int k = 0; k < 3; k++)
				s += g.dir[3 * k + i] * g.dir[3 * k + j];
			orth = fmax(orth, fabs(s - (i == j)));
		}
	for (int i = 0; i < 9; i++)
		dd = fmax(dd, fabs(g.dir[i] - gs.dir[i]));
	CHECK(
	    orth < 1e-12 && dd < 1e-3 && ffdp_grid_check(&g, &err) == FFDP_OK,
	    "slight shear: direction orthonormalised (|D^T D - I| = %.1e), within %.1e of the unsheared one",
	    orth, dd);

	memcpy(sheared, S, sizeof(sheared));
	sheared[1] += 0.1 * S[0], sheared[5] += 0.1 * S[4], sheared[9] += 0.1 * S[8];
	sp.s = sheared;
	write_raw(tu_path(path, 1200, g_dir, "strong_shear.nii"), &sp);
	ffdp_status s = ffdp_image_read_header(path, &g, &info, &err);
	CHECK(s == FFDP_ERR_DATA && strstr(err.msg, "strong_shear.nii") && strstr(err.msg, "shear"),
	      "strong shear and no qform refused: %s", err.msg);
}

/* A big-endian int16 file, byte-swapped by hand: header fields and data. */
static void test_big_endian(void)
{
	char path[1200];
	ffdp_error err = {0};
	int64_t dims[8] = {3, 4, 3, 2, 1, 1, 1, 1};
	nifti_image *nim = nifti_make_new_nim(dims, DT_INT16, 1);
	for (int64_t i = 0; i < nim->nvox; i++)
		((int16_t *)nim->data)[i] = (int16_t)(1000 * (i % 5) - 2001);
	nim->scl_slope = 0.5, nim->scl_inter = 4;
	nim->nifti_type = NIFTI_FTYPE_NIFTI1_1;
	nifti_1_header h;
	nifti_convert_nim2n1hdr(nim, &h);
	h.vox_offset = 352;
	memcpy(h.magic, "n+1", 4);
	nifti_swap_as_nifti1(&h);
	nifti_swap_2bytes(nim->nvox, nim->data);
	FILE *f = fopen(tu_path(path, 1200, g_dir, "big_endian.nii"), "wb");
	fwrite(&h, sizeof(h), 1, f);
	fwrite("\0\0\0\0", 1, 4, f);
	fwrite(nim->data, 2, (size_t)nim->nvox, f);
	fclose(f);
	nifti_image_free(nim);
	ffdp_volume v = {0};
	CHECK_OK(ffdp_image_read(path, 0, &v, NULL, &err), &err, "read a big-endian int16 file");
	double worst = 0;
	for (int64_t i = 0; v.data && i < 24; i++)
		worst = fmax(worst, fabs(v.data[i] - (0.5 * (1000 * (i % 5) - 2001) + 4)));
	CHECK(v.data && v.grid.n[0] == 4 && v.grid.n[2] == 2 && worst == 0,
	      "big-endian: 4x3x2 and 24 values = 0.5*stored + 4 exactly (max error %g)", worst);
	ffdp_volume_free(&v);
}

/* A 2-D file whose sform has an all-zero third column (some tools write that). */
static void test_flat_sform(void)
{
	char path[1200];
	ffdp_error err = {0};
	double S[12] = {0, -0.5, 0, 3, 0.7, 0, 0, -4, 0, 0, 0, 5};
	raw_spec sp = {{2, 6, 5, 1, 1, 1, 1, 1}, DT_FLOAT32, 0, 0, 0, 2, NULL, S, {0.7, 0.5, 2.5}};
	write_raw(tu_path(path, 1200, g_dir, "flat_sform.nii"), &sp);
	ffdp_grid g;
	ffdp_image_info info;
	CHECK_OK(ffdp_image_read_header(path, &g, &info, &err), &err,
		 "2-D file with a zero third sform column reads");
	/* LPS columns: x -> (0, -0.7, 0) = A (0.7 mm), y -> (0.5, 0, 0) = L (0.5 mm), z = x cross y = (0, 0,
	 * 1) = S. */
	CHECK(!strcmp(info.orientation, "ALS") && fabs(g.spacing[0] - 0.7) < 1e-6 &&
		  fabs(g.spacing[1] - 0.5) < 1e-6 && g.spacing[2] == 2.5 && fabs(g.dir[8] - 1) < 1e-12 &&
		  g.origin[0] == -3 && g.origin[2] == 5,
	      "zero third column rebuilt: orientation %s, spacing %g %g %g (pixdim for z)", info.orientation,
	      g.spacing[0], g.spacing[1], g.spacing[2]);
}

/* ---- non-finite voxels ---- */

static void test_nonfinite(tu_rng *r)
{
	ffdp_error err = {0};
	char path[1200];
	ffdp_grid g = tu_random_grid(r, 8, 7, 6);
	ffdp_volume v = {0}, back = {0};
	ffdp_volume_alloc(&v, &g, &err);
	tu_fill_uniform(r, v.data, ffdp_grid_voxels(&g), 2, 3);
	v.data[3] = NAN, v.data[50] = NAN, v.data[100] = INFINITY, v.data[200] = -INFINITY;
	CHECK_OK(ffdp_image_write(tu_path(path, 1200, g_dir, "nan.nii.gz"), &v, FFDP_WRITE_FLOAT32, &err), &err,
		 "write with NaN/Inf");
	ffdp_status s = ffdp_image_read(path, 0, &back, NULL, &err);
	CHECK(s == FFDP_ERR_DATA && strstr(err.msg, "nan.nii.gz: 4 voxels are NaN or infinite") && !back.data,
	      "NaN/Inf voxels refused: %s", err.msg);
	ffdp_image_info info;
	CHECK_OK(ffdp_image_read(path, FFDP_READ_ALLOW_NONFINITE, &back, &info, &err), &err,
		 "accepted with FFDP_READ_ALLOW_NONFINITE");
	CHECK(back.data && isnan(back.data[3]) && isnan(back.data[50]) && back.data[100] == INFINITY &&
		  back.data[200] == -INFINITY && back.data[4] == v.data[4] && info.intensity_min >= 2 &&
		  info.intensity_max <= 3,
	      "NaN/Inf kept as they are (nifti_clib would zero them); range %g .. %g of the finite voxels",
	      info.intensity_min, info.intensity_max);
	ffdp_volume_free(&back);
	s = ffdp_image_write(tu_path(path, 1200, g_dir, "nan_i16.nii"), &v, FFDP_WRITE_INT16, &err);
	CHECK(s == FFDP_ERR_DATA && access(path, F_OK) != 0, "NaN cannot be written as int16: %s", err.msg);
	ffdp_volume_free(&v);
}

/* ---- bad input and failed writes ---- */

static void test_bad_input(tu_rng *r)
{
	ffdp_error err = {0};
	char path[1200], path2[1200];
	ffdp_volume v = {0}, back = {0};
	ffdp_grid g = tu_random_grid(r, 40, 40, 40);
	ffdp_volume_alloc(&v, &g, &err);
	tu_fill_uniform(r, v.data, ffdp_grid_voxels(&g), 0, 1);
	ffdp_status s;

	s = ffdp_image_read(tu_path(path, 1200, g_dir, "missing.nii"), 0, &back, NULL, &err);
	CHECK(s == FFDP_ERR_IO && strstr(err.msg, path) && strstr(err.msg, "no such file"), "missing: %s",
	      err.msg);
	FILE *f = fopen(tu_path(path, 1200, g_dir, "empty.nii"), "wb");
	fclose(f);
	s = ffdp_image_read(path, 0, &back, NULL, &err);
	CHECK(s == FFDP_ERR_FORMAT && strstr(err.msg, path) && strstr(err.msg, "empty"), "zero bytes: %s",
	      err.msg);
	f = fopen(tu_path(path, 1200, g_dir, "text.nii"), "w");
	for (int i = 0; i < 40; i++)
		fprintf(f, "this is a text file, not an image %d\n", i);
	fclose(f);
	s = ffdp_image_read(path, 0, &back, NULL, &err);
	CHECK(s == FFDP_ERR_FORMAT && strstr(err.msg, path) && strstr(err.msg, "not a NIfTI file"),
	      "text file: %s", err.msg);

	char cmd[4096];
	/* Truncated files: the header is fine, the data are short. */
	CHECK_OK(ffdp_image_write(tu_path(path, 1200, g_dir, "whole.nii"), &v, FFDP_WRITE_FLOAT32, &err), &err,
		 "write 40^3 .nii");
	CHECK_OK(ffdp_image_write(tu_path(path2, 1200, g_dir, "whole.nii.gz"), &v, FFDP_WRITE_FLOAT32, &err), &err,
		 "write 40^3 .nii.gz");
	for (int gz = 0; gz < 2; gz++) {
		char cut[1200];
		tu_path(cut, 1200, g_dir, gz ? "cut.nii.gz" : "cut.nii");
		struct stat st;
		stat(gz ? path2 : path, &st);
		snprintf(cmd, sizeof(cmd), "head -c %lld '%s' > '%s'", (long long)st.st_size / 2,
			 gz ? path2 : path, cut);
		CHECK(system(cmd) == 0, "made %s (half of the file)", cut);
		s = ffdp_image_read(cut, 0, &back, NULL, &err);
		CHECK(s == FFDP_ERR_FORMAT && strstr(err.msg, cut) && strstr(err.msg, "truncated") &&
			  !back.data,
		      "truncated %s refused: %s", gz ? ".nii.gz" : ".nii", err.msg);
	}

	tu_path(path, 1200, g_dir, "misnamed.nii");
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", path2, path);
	CHECK(system(cmd) == 0, "made misnamed.nii (gzip content)");
	s = ffdp_image_read(path, 0, &back, NULL, &err);
	CHECK(s == FFDP_ERR_FORMAT && strstr(err.msg, "misnamed.nii") && strstr(err.msg, "rename"),
	      "gzip data named .nii: %s", err.msg);

	/* Flipped bytes inside the compressed data: inflate or the CRC must notice. */
	tu_path(path, 1200, g_dir, "corrupt.nii.gz");
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && printf '\\377\\000\\377\\000' | "
		 "dd of='%s' bs=1 seek=150000 conv=notrunc status=none", path2, path, path);
	CHECK(system(cmd) == 0, "made corrupt.nii.gz (4 bytes overwritten mid-stream)");
	s = ffdp_image_read(path, 0, &back, NULL, &err);
	CHECK(s == FFDP_ERR_FORMAT && strstr(err.msg, "corrupt.nii.gz") &&
		      strstr(err.msg, "corrupt compressed data"),
	      "corrupt .nii.gz refused: %s", err.msg);

	/* Failed writes leave nothing behind and never touch an existing target. */
	s = ffdp_image_write("/proc/ffdp-no-such-dir/x.nii", &v, FFDP_WRITE_FLOAT32, &err);
	CHECK(s == FFDP_ERR_IO && strstr(err.msg, "/proc/ffdp-no-such-dir"), "missing directory: %s",
	      err.msg);
	s = ffdp_image_write("/proc/ffdp-test.nii.gz", &v, FFDP_WRITE_FLOAT32, &err);
	CHECK(s == FFDP_ERR_IO && strstr(err.msg, "/proc/ffdp-test.nii.gz"), "unwritable directory: %s",
	      err.msg);
	mkdir(tu_path(path, 1200, g_dir, "adir.nii"), 0777);
	s = ffdp_image_write(path, &v, FFDP_WRITE_FLOAT32, &err);
	CHECK(s == FFDP_ERR_IO && strstr(err.msg, "adir.nii") && strstr(err.msg, "directory"),
	      "target is a directory: %s", err.msg);
	s = ffdp_image_write(tu_path(path, 1200, g_dir, "x.img"), &v, FFDP_WRITE_FLOAT32, &err);
	CHECK(s == FFDP_ERR_ARG && strstr(err.msg, "x.img"), "unknown extension: %s", err.msg);
	CHECK(ffdp_check_writable(tu_path(path, 1200, g_dir, "ok.nii.gz"), &err) == FFDP_OK && access(path, F_OK) != 0,
	      "check_writable: the test directory is writable (and no file is left)");
	s = ffdp_check_writable("/proc/ffdp-no-such-dir/x.nii", &err);
	CHECK(s == FFDP_ERR_IO && strstr(err.msg, "/proc/ffdp-no-such-dir"), "check_writable refuses: %s",
	      err.msg);

	/* An existing output survives a failed overwrite unchanged. */
	tu_path(path, 1200, g_dir, "keep.nii");
	CHECK_OK(ffdp_image_write(path, &v, FFDP_WRITE_FLOAT32, &err), &err, "write keep.nii");
	float saved = v.data[0];
	v.data[0] = NAN;
	s = ffdp_image_write(path, &v, FFDP_WRITE_UINT8, &err);
	v.data[0] = saved;
	CHECK(s == FFDP_ERR_DATA, "overwrite with NaN as uint8 fails: %s", err.msg);
	CHECK_OK(ffdp_image_read(path, 0, &back, NULL, &err), &err, "keep.nii still reads");
	CHECK(back.data && memcmp(back.data, v.data, (size_t)ffdp_grid_voxels(&g) * 4) == 0,
	      "keep.nii unchanged after the failed overwrite");
	ffdp_volume_free(&back);
	CHECK(tu_count_temporaries(g_dir) == 0, "no temporary files left in %s", g_dir);
	ffdp_volume_free(&v);
}

int main(void)
{
	snprintf(g_dir, sizeof(g_dir), "%s", FFDP_TEST_TMP);
	tu_mkdirs(g_dir);
	tu_rng r = tu_rng_make(2024);
	test_float_round_trip(&r);
	test_scaled(&r);
	test_datatypes();
	test_nifti2_2d_4d(&r);
	test_qform_sform(&r);
	test_big_endian();
	test_flat_sform();
	test_nonfinite(&r);
	test_bad_input(&r);
	return check_done();
}

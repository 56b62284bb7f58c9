/* Displacement fields (ANTs/ITK NIfTI layout) and ITK text affines:
 * round trips, the on-disk layout checked with nifti_clib, and hand-written
 * ITK files whose matrices are derived by hand below. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nifti2_io.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static char g_dir[1024];

/* ---- fields ---- */

static void field_round_trip(tu_rng *r, int64_t nx, int64_t ny, int64_t nz, const char *name)
{
	ffdp_error err = {0};
	char path[1200];
	ffdp_field u = {0}, back = {0};
	ffdp_grid g = tu_random_grid(r, nx, ny, nz);
	ffdp_field_alloc(&u, &g, &err);
	int64_t n = ffdp_grid_voxels(&g);
	for (int c = 0; c < u.ncomp; c++)
		tu_fill_uniform(r, u.c[c], n, -7.5, 7.5);
	CHECK_OK(ffdp_field_write(tu_path(path, 1200, g_dir, name), &u, &err), &err, "write %d-component field %s", u.ncomp,
		 name);
	CHECK_OK(ffdp_field_read(path, &back, &err), &err, "read %s back", name);
	int same = back.ncomp == u.ncomp && ffdp_grid_same(&back.grid, &g, 1e-6);
	for (int c = 0; same && c < u.ncomp; c++)
		same = memcmp(back.c[c], u.c[c], (size_t)n * 4) == 0;
	CHECK(same, "%s: %d planes bit-exact, grid within 1e-6", name, u.ncomp);

	/* The file as nifti_clib sees it: ANTs' 5-D vector layout, component planes in order. */
	nifti_image *nim = nifti_image_read(path, 1);
	int layout = nim && nim->dim[0] == 5 && nim->dim[1] == nx && nim->dim[2] == ny && nim->dim[3] == nz &&
		     nim->dim[4] == 1 && nim->dim[5] == u.ncomp && nim->intent_code == NIFTI_INTENT_VECTOR &&
		     nim->datatype == DT_FLOAT32;
	CHECK(layout, "%s: dim = [%lld, %lld, %lld, %lld, %lld, %lld], intent %s, %s", name,
	      nim ? (long long)nim->dim[0] : -1LL, nim ? (long long)nim->dim[1] : -1LL,
	      nim ? (long long)nim->dim[2] : -1LL, nim ? (long long)nim->dim[3] : -1LL,
	      nim ? (long long)nim->dim[4] : -1LL, nim ? (long long)nim->dim[5] : -1LL,
	      nim ? nifti_intent_string(nim->intent_code) : "?",
	      nim ? nifti_datatype_string(nim->datatype) : "?");
	int planes = nim && layout;
	for (int c = 0; planes && c < u.ncomp; c++)
		planes = memcmp((float *)nim->data + c * n, u.c[c], (size_t)n * 4) == 0;
	CHECK(planes, "%s: data[c*nvox + i] = u.c[c][i] (vectors in LPS mm, unflipped)", name);
	nifti_image_free(nim);
	ffdp_field_free(&u);
	ffdp_field_free(&back);
}

static void test_fields(tu_rng *r)
{
	ffdp_error err = {0};
	char path[1200];
	field_round_trip(r, 12, 10, 8, "warp3d.nii.gz");
	field_round_trip(r, 15, 11, 1, "warp2d.nii");

	/* A float64 field written by nifti_clib. */
	int64_t dims[8] = {5, 4, 3, 2, 1, 3, 1, 1};
	nifti_image *nim = nifti_make_new_nim(dims, DT_FLOAT64, 1);
	for (int64_t i = 0; i < nim->nvox; i++)
		((double *)nim->data)[i] = 0.125 * (double)i - 3.0;
	nim->intent_code = NIFTI_INTENT_VECTOR;
	free(nim->fname), free(nim->iname);
	nim->fname = nifti_strdup(tu_path(path, 1200, g_dir, "warp_f64.nii")), nim->iname = nifti_strdup(path);
	nifti_image_write(nim);
	nifti_image_free(nim);
	ffdp_field u = {0};
	CHECK_OK(ffdp_field_read(path, &u, &err), &err, "read a float64 field");
	double worst = 0;
	for (int c = 0; u.c[0] && c < 3; c++)
		for (int64_t i = 0; i < 24; i++)
			worst = fmax(worst, fabs(u.c[c][i] - (0.125 * (double)(c * 24 + i) - 3.0)));
	CHECK(u.c[0] && u.ncomp == 3 && worst == 0, "float64 field: 72 values exact, 3 planes in order");
	ffdp_field_free(&u);

	/* A scalar image is not a field. */
	ffdp_volume v = {0};
	ffdp_grid g = tu_random_grid(r, 5, 5, 5);
	ffdp_volume_alloc(&v, &g, &err);
	ffdp_image_write(tu_path(path, 1200, g_dir, "scalar.nii"), &v, FFDP_WRITE_FLOAT32, &err);
	ffdp_status s = ffdp_field_read(path, &u, &err);
	CHECK(s == FFDP_ERR_DATA && strstr(err.msg, "scalar.nii") &&
		  strstr(err.msg, "not a displacement field"),
	      "scalar image refused as a field: %s", err.msg);
	ffdp_volume_free(&v);

	/* NaN displacement refused. */
	ffdp_field_alloc(&u, &g, &err);
	u.c[1][7] = NAN;
	CHECK_OK(ffdp_field_write(tu_path(path, 1200, g_dir, "warp_nan.nii"), &u, &err), &err,
		 "write a field holding a NaN");
	ffdp_field_free(&u);
	s = ffdp_field_read(path, &u, &err);
	CHECK(s == FFDP_ERR_DATA && strstr(err.msg, "warp_nan.nii: 1 displacement values"),
	      "NaN field refused: %s", err.msg);
	s = ffdp_field_write(tu_path(path, 1200, g_dir, "warp.mha"), &u, &err);
	CHECK(s == FFDP_ERR_ARG && strstr(err.msg, "warp.mha"), "field write refuses .mha: %s", err.msg);
}

/* ---- ITK affines ---- */

static void check_matrix(const char *what, const ffdp_mat4 *got, const double want[12], double tol)
{
	double d = 0;
	for (int i = 0; i < 12; i++)
		d = fmax(d, fabs(got->m[i] - want[i]));
	d = fmax(d, fabs(got->m[12]) + fabs(got->m[13]) + fabs(got->m[14]) + fabs(got->m[15] - 1));
	CHECK(d <= tol, "%s: matrix as derived by hand (max diff %.1e)", what, d);
}

/* A random rotation scaled per row, with a shear and translation t. */
static ffdp_mat4 random_affine(tu_rng *r, const double t[3])
{
	double R[9];
	tu_random_rotation(r, R);
	ffdp_mat4 T = ffdp_mat4_identity();
	for (int i = 0; i < 3; i++) {
		for (int j = 0; j < 3; j++)
			T.m[4 * i + j] = R[3 * i + j] * (0.8 + 0.1 * i) + (i == 0 && j == 1 ? 0.05 : 0.0);
		T.m[4 * i + 3] = t[i];
	}
	return T;
}

static void test_affine(tu_rng *r)
{
	ffdp_error err = {0};
	char path[1200];
	const double t[3] = {12.345678901234567, -0.1 / 3.0, 1e-9};
	ffdp_mat4 T = random_affine(r, t), back;
	CHECK_OK(ffdp_affine_write(tu_path(path, 1200, g_dir, "affine.txt"), &T, &err), &err, "write affine.txt");
	CHECK_OK(ffdp_affine_read(path, &back, &err), &err, "read affine.txt back");
	CHECK(memcmp(back.m, T.m, sizeof(T.m)) == 0, "affine round trip is exact (%%.17g)");
	FILE *f = fopen(path, "r");
	char l1[128] = "", l2[128] = "", l3[128] = "", l4[1024] = "", l5[128] = "";
	if (f) {
		int ok = fgets(l1, sizeof(l1), f) && fgets(l2, sizeof(l2), f) && fgets(l3, sizeof(l3), f) &&
			 fgets(l4, sizeof(l4), f) && fgets(l5, sizeof(l5), f);
		(void)ok; /* a short file fails the string checks below */
		fclose(f);
	}
	CHECK(!strcmp(l1, "#Insight Transform File V1.0\n") && !strcmp(l2, "#Transform 0\n") &&
		  !strcmp(l3, "Transform: AffineTransform_double_3_3\n") &&
		  !strncmp(l4, "Parameters: ", 12) && !strcmp(l5, "FixedParameters: 0 0 0\n"),
	      "affine.txt has ITK's five lines (type AffineTransform_double_3_3, centre 0 0 0)");

	/* float type with a centre: A = diag(2, 1, 0.5), t = (1, 2, 3), c = (10, 20, 30);
	 * offset = t + c - A c = (1 + 10 - 20, 2 + 20 - 20, 3 + 30 - 15) = (-9, 2, 18). */
	tu_write_text(tu_path(path, 1200, g_dir, "centred_float.txt"), "#Insight Transform File V1.0\n#Transform 0\n"
						     "Transform: AffineTransform_float_3_3\n"
						     "Parameters: 2 0 0 0 1 0 0 0 0.5 1 2 3\n"
						     "FixedParameters: 10 20 30\n");
	double want1[12] = {2, 0, 0, -9, 0, 1, 0, 2, 0, 0, 0.5, 18};
	CHECK_OK(ffdp_affine_read(path, &back, &err), &err, "read AffineTransform_float_3_3 with a centre");
	check_matrix("float, centre (10, 20, 30)", &back, want1, 0);

	/* A 90-degree turn about z: A = [0 -1 0; 1 0 0; 0 0 1], t = (5, 0, 0), c = (1, 2, 3);
	 * A c = (-2, 1, 3), offset = (5 + 1 + 2, 0 + 2 - 1, 0 + 3 - 3) = (8, 1, 0).  CRLF line ends. */
	tu_write_text(tu_path(path, 1200, g_dir, "mob.tfm"),
		   "#Insight Transform File V1.0\r\n#Transform 0\r\n"
		   "Transform: MatrixOffsetTransformBase_double_3_3\r\n"
		   "Parameters: 0 -1 0 1 0 0 0 0 1 5 0 0\r\nFixedParameters: 1 2 3\r\n");
	double want2[12] = {0, -1, 0, 8, 1, 0, 0, 1, 0, 0, 1, 0};
	CHECK_OK(ffdp_affine_read(path, &back, &err), &err, "read MatrixOffsetTransformBase_double_3_3");
	check_matrix("rotation about z, centre (1, 2, 3)", &back, want2, 0);

	/* 2-D: A = [1 2; 3 4], t = (5, 6), c = (1, 1): A c = (3, 7), offset = (3, 0). */
	tu_write_text(tu_path(path, 1200, g_dir, "affine2d.txt"), "#Insight Transform File V1.0\n#Transform 0\n"
						"Transform: AffineTransform_double_2_2\n"
						"Parameters: 1 2 3 4 5 6\nFixedParameters: 1 1\n");
	double want3[12] = {1, 2, 0, 3, 3, 4, 0, 0, 0, 0, 1, 0};
	CHECK_OK(ffdp_affine_read(path, &back, &err), &err, "read AffineTransform_double_2_2");
	check_matrix("2-D affine embedded in 3-D", &back, want3, 0);

	/* The other linear types, each from its definition (itk_params.c), with
	 * centre c = (1, 2, 3) where it takes one: offset = t + c - A c. */
	static const struct {
		const char *name, *type, *params, *fixed;
		double want[12];
	} lin[] = {
	    /* Rz Rx Ry at (90, 90, 0) degrees = [0 0 1; 1 0 0; 0 1 0]; A c = (3, 1, 2) */
	    {"euler.txt", "Euler3DTransform_double_3_3", "1.5707963267948966 1.5707963267948966 0 1 2 3", "1 2 3",
	     {0, 0, 1, -1, 1, 0, 0, 3, 0, 1, 0, 4}},
	    /* ComputeZYX: Rz Ry Rx = [0 1 0; 0 0 -1; -1 0 0]; A c = (2, -3, -1) */
	    {"euler_zyx.txt", "Euler3DTransform_double_3_3", "1.5707963267948966 1.5707963267948966 0 1 2 3",
	     "1 2 3 1", {0, 1, 0, 0, 0, 0, -1, 7, -1, 0, 0, 7}},
	    /* versor of 90 degrees about z: [0 -1 0; 1 0 0; 0 0 1]; A c = (-2, 1, 3) */
	    {"versor.txt", "VersorRigid3DTransform_double_3_3", "0 0 0.70710678118654757 1 2 3", "1 2 3",
	     {0, -1, 0, 4, 1, 0, 0, 3, 0, 0, 1, 3}},
	    /* the same, scaled by 2: A c = (-4, 2, 6) */
	    {"similarity.txt", "Similarity3DTransform_float_3_3", "0 0 0.70710678118654757 1 2 3 2", "1 2 3",
	     {0, -2, 0, 6, 2, 0, 0, 2, 0, 0, 2, 0}},
	    {"translation.tfm", "TranslationTransform_double_3_3", "4 -5 6", "", {1, 0, 0, 4, 0, 1, 0, -5, 0, 0, 1, 6}},
	    /* 2-D, 90 degrees about c = (1, 2): A c = (-2, 1) */
	    {"rigid2d.txt", "Euler2DTransform_double_2_2", "1.5707963267948966 1 2", "1 2",
	     {0, -1, 0, 4, 1, 0, 0, 3, 0, 0, 1, 0}},
	};
	for (size_t i = 0; i < sizeof(lin) / sizeof(lin[0]); i++) {
		char text[512];
		snprintf(text, sizeof(text),
			 "#Insight Transform File V1.0\n#Transform 0\nTransform: %s\nParameters: %s\nFixedParameters: %s\n",
			 lin[i].type, lin[i].params, lin[i].fixed);
		tu_write_text(tu_path(path, 1200, g_dir, lin[i].name), text);
		CHECK_OK(ffdp_affine_read(path, &back, &err), &err, "read %s", lin[i].type);
		check_matrix(lin[i].name, &back, lin[i].want, 1e-12);
	}

	/* Files that must be refused, each naming the file. */
	static const struct {
		const char *name, *text, *expect;
	} bad[] = {
	    {"bspline.txt",
	     "#Insight Transform File V1.0\n#Transform 0\nTransform: BSplineTransform_double_3_3\n"
	     "Parameters: 0 0 0 0 0 0\nFixedParameters: 0 0 0\n",
	     "not supported"},
	    {"short.txt",
	     "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
	     "Parameters: 1 0 0 0 1 0 0 0 1\nFixedParameters: 0 0 0\n",
	     "needs 12 parameters"},
	    {"garbage.txt",
	     "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
	     "Parameters: 1 0 0 0 1 0 0 0 1 0 0 zero\nFixedParameters: 0 0 0\n",
	     "not a finite number"},
	    {"notitk.txt", "hello\n", "not an ITK text transform"},
	    {"two.txt",
	     "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
	     "Parameters: 1 0 0 0 1 0 0 0 1 0 0 0\nFixedParameters: 0 0 0\n#Transform 1\n"
	     "Transform: AffineTransform_double_3_3\nParameters: 1 0 0 0 1 0 0 0 1 0 0 0\n",
	     "more than one transform"},
	    {"empty.txt", "", "empty file"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tu_write_text(tu_path(path, 1200, g_dir, bad[i].name), bad[i].text);
		ffdp_status s = ffdp_affine_read(path, &back, &err);
		CHECK(s == FFDP_ERR_FORMAT && strstr(err.msg, bad[i].name) && strstr(err.msg, bad[i].expect),
		      "refused %s: %s", bad[i].name, err.msg);
	}
	ffdp_status s = ffdp_affine_read(tu_path(path, 1200, g_dir, "missing.txt"), &back, &err);
	CHECK(s == FFDP_ERR_IO && strstr(err.msg, "missing.txt"), "missing transform: %s", err.msg);
	s = ffdp_affine_write(tu_path(path, 1200, g_dir, "affine.xfm"), &T, &err);
	CHECK(s == FFDP_ERR_ARG && strstr(err.msg, "affine.xfm") && access(path, F_OK) != 0,
	      "an unknown transform extension refused for output: %s", err.msg);
	s = ffdp_affine_write("/proc/ffdp-no-such-dir/a.txt", &T, &err);
	CHECK(s == FFDP_ERR_IO && strstr(err.msg, "/proc/ffdp-no-such-dir"), "unwritable: %s", err.msg);
	T.m[14] = 0.5;
	s = ffdp_affine_write(tu_path(path, 1200, g_dir, "proj.txt"), &T, &err);
	CHECK(s == FFDP_ERR_ARG && access(path, F_OK) != 0, "non-affine last row refused: %s", err.msg);
	CHECK(tu_count_temporaries(g_dir) == 0, "no temporary files left in %s", g_dir);
}

/* ---- ITK's MATLAB binary transforms (.mat, MATLAB Level 4) ----
 * The files below are built byte by byte from the format's definition:
 * per matrix five 32-bit integers (type = 1000 M + 10 P, rows, columns,
 * imaginary flag, name length with its NUL), the name, the values. */

typedef struct mat_buf {
	unsigned char b[1024];
	size_t n;
} mat_buf;

static void mat_u32(mat_buf *m, uint32_t v, int big)
{
	for (int k = 0; k < 4; k++)
		m->b[m->n++] = (unsigned char)(v >> (big ? 24 - 8 * k : 8 * k));
}

/* A column of n values named name: doubles (P 0) or floats (P 1). */
static void mat_add(mat_buf *m, const char *name, const double *v, int n, int is_float, int big)
{
	mat_u32(m, (big ? 1000u : 0u) + (is_float ? 10u : 0u), big);
	mat_u32(m, (uint32_t)n, big), mat_u32(m, 1, big), mat_u32(m, 0, big);
	mat_u32(m, (uint32_t)strlen(name) + 1, big);
	memcpy(m->b + m->n, name, strlen(name) + 1);
	m->n += strlen(name) + 1;
	for (int i = 0; i < n; i++) {
		uint64_t u;
		int w = is_float ? 4 : 8;
		if (is_float) {
			float f = (float)v[i];
			uint32_t u32;
			memcpy(&u32, &f, 4);
			u = u32;
		} else {
			memcpy(&u, &v[i], 8);
		}
		for (int k = 0; k < w; k++)
			m->b[m->n++] = (unsigned char)(u >> (big ? 8 * (w - 1 - k) : 8 * k));
	}
}

static void mat_save(const char *path, const mat_buf *m)
{
	FILE *f = fopen(path, "wb");
	int ok = f && fwrite(m->b, 1, m->n, f) == m->n;
	if (f)
		fclose(f);
	CHECK(ok, "wrote the test file %s", path);
}

static void test_affine_mat(tu_rng *r)
{
	ffdp_error err = {0};
	char path[1200];
	const double t[3] = {-3.25, 1.0 / 7.0, 40.5};
	ffdp_mat4 T = random_affine(r, t), back;

	/* our writer: ANTs' layout, read back exactly */
	CHECK_OK(ffdp_affine_write(tu_path(path, 1200, g_dir, "ours0GenericAffine.mat"), &T, &err), &err,
		 "write a .mat");
	CHECK_OK(ffdp_affine_read(path, &back, &err), &err, "read our .mat back");
	CHECK(memcmp(back.m, T.m, sizeof(T.m)) == 0, ".mat round trip is exact");
	mat_buf want = {{0}, 0};
	double p[12], zero[3] = {0, 0, 0};
	for (int i = 0; i < 3; i++) {
		for (int j = 0; j < 3; j++)
			p[3 * i + j] = T.m[4 * i + j];
		p[9 + i] = T.m[4 * i + 3];
	}
	mat_add(&want, "AffineTransform_double_3_3", p, 12, 0, 0);
	mat_add(&want, "fixed", zero, 3, 0, 0);
	unsigned char got[1024];
	FILE *f = fopen(path, "rb");
	size_t n = f ? fread(got, 1, sizeof(got), f) : 0;
	if (f)
		fclose(f);
	CHECK(n == want.n && n == 193 && !memcmp(got, want.b, n),
	      "the .mat is the two Level 4 matrices ITK writes (%zu bytes, want 193)", n);

	/* big-endian floats with a centre (the text test's numbers): offset (-9, 2, 18) */
	mat_buf m = {{0}, 0};
	const double pf[12] = {2, 0, 0, 0, 1, 0, 0, 0, 0.5, 1, 2, 3}, cf[3] = {10, 20, 30};
	mat_add(&m, "AffineTransform_float_3_3", pf, 12, 1, 1);
	mat_add(&m, "fixed", cf, 3, 1, 1);
	mat_save(tu_path(path, 1200, g_dir, "be_float.mat"), &m);
	double want1[12] = {2, 0, 0, -9, 0, 1, 0, 2, 0, 0, 0.5, 18};
	CHECK_OK(ffdp_affine_read(path, &back, &err), &err, "read a big-endian float .mat");
	check_matrix(".mat big-endian float, centre (10, 20, 30)", &back, want1, 0);

	/* the centre first, then MatrixOffsetTransformBase: offset (8, 1, 0) */
	m.n = 0;
	const double pr[12] = {0, -1, 0, 1, 0, 0, 0, 0, 1, 5, 0, 0}, cr[3] = {1, 2, 3};
	mat_add(&m, "fixed", cr, 3, 0, 0);
	mat_add(&m, "MatrixOffsetTransformBase_double_3_3", pr, 12, 0, 0);
	mat_save(tu_path(path, 1200, g_dir, "mob.mat"), &m);
	double want2[12] = {0, -1, 0, 8, 1, 0, 0, 1, 0, 0, 1, 0};
	CHECK_OK(ffdp_affine_read(path, &back, &err), &err, "read MatrixOffsetTransformBase from .mat");
	check_matrix(".mat rotation about z, centre (1, 2, 3)", &back, want2, 0);

	/* 2-D: offset (3, 0) */
	m.n = 0;
	const double p2[6] = {1, 2, 3, 4, 5, 6}, c2[2] = {1, 1};
	mat_add(&m, "AffineTransform_double_2_2", p2, 6, 0, 0);
	mat_add(&m, "fixed", c2, 2, 0, 0);
	mat_save(tu_path(path, 1200, g_dir, "affine2d.mat"), &m);
	double want3[12] = {1, 2, 0, 3, 3, 4, 0, 0, 0, 0, 1, 0};
	CHECK_OK(ffdp_affine_read(path, &back, &err), &err, "read a 2-D .mat");
	check_matrix(".mat 2-D affine embedded in 3-D", &back, want3, 0);

	/* a non-affine type from .mat: Euler3D with ComputeZYX (4 fixed values), as the text test */
	m.n = 0;
	const double pe[6] = {1.5707963267948966, 1.5707963267948966, 0, 1, 2, 3}, ce[4] = {1, 2, 3, 1};
	mat_add(&m, "Euler3DTransform_double_3_3", pe, 6, 0, 0);
	mat_add(&m, "fixed", ce, 4, 0, 0);
	mat_save(tu_path(path, 1200, g_dir, "euler_zyx.mat"), &m);
	double want4[12] = {0, 1, 0, 0, 0, 0, -1, 7, -1, 0, 0, 7};
	CHECK_OK(ffdp_affine_read(path, &back, &err), &err, "read an Euler3DTransform .mat");
	check_matrix(".mat Euler3D, ComputeZYX, centre (1, 2, 3)", &back, want4, 1e-12);

	/* refusals, each naming the file */
	struct {
		const char *name, *expect;
		mat_buf m;
	} bad[8];
	memset(bad, 0, sizeof(bad));
	const double nan3[3] = {0, NAN, 0};
	int nb = 0;
	bad[nb].name = "bspline.mat", bad[nb].expect = "not supported";
	mat_add(&bad[nb++].m, "BSplineTransform_double_3_3", pf, 6, 0, 0);
	bad[nb].name = "short.mat", bad[nb].expect = "needs 12 parameters";
	mat_add(&bad[nb++].m, "AffineTransform_double_3_3", pf, 9, 0, 0);
	bad[nb].name = "two.mat", bad[nb].expect = "more than one transform";
	mat_add(&bad[nb].m, "AffineTransform_double_3_3", pf, 12, 0, 0);
	mat_add(&bad[nb++].m, "AffineTransform_double_3_3", pf, 12, 0, 0);
	bad[nb].name = "truncated.mat", bad[nb].expect = "truncated";
	mat_add(&bad[nb].m, "AffineTransform_double_3_3", pf, 12, 0, 0);
	bad[nb++].m.n -= 5;
	bad[nb].name = "nan.mat", bad[nb].expect = "not a finite number";
	mat_add(&bad[nb].m, "AffineTransform_double_3_3", pf, 12, 0, 0);
	mat_add(&bad[nb++].m, "fixed", nan3, 3, 0, 0);
	bad[nb].name = "onlyfixed.mat", bad[nb].expect = "no transform parameters";
	mat_add(&bad[nb++].m, "fixed", cf, 3, 0, 0);
	bad[nb].name = "level5.mat", bad[nb].expect = "Level 5";
	memcpy(bad[nb].m.b, "MATLAB 5.0 MAT-file, Platform: x", 32);
	bad[nb++].m.n = 128;
	bad[nb].name = "text.mat", bad[nb].expect = "not a MATLAB Level 4";
	memcpy(bad[nb].m.b, "#Insight Transform File V1.0\n", 29);
	bad[nb++].m.n = 29;
	for (int i = 0; i < nb; i++) {
		mat_save(tu_path(path, 1200, g_dir, bad[i].name), &bad[i].m);
		ffdp_status s = ffdp_affine_read(path, &back, &err);
		CHECK(s == FFDP_ERR_FORMAT && strstr(err.msg, bad[i].name) && strstr(err.msg, bad[i].expect),
		      "refused %s: %s", bad[i].name, err.msg);
	}
	ffdp_status s = ffdp_affine_read(tu_path(path, 1200, g_dir, "missing.mat"), &back, &err);
	CHECK(s == FFDP_ERR_IO && strstr(err.msg, "missing.mat"), "missing .mat: %s", err.msg);
	CHECK(tu_count_temporaries(g_dir) == 0, "no temporary files left in %s", g_dir);
}

int main(void)
{
	snprintf(g_dir, sizeof(g_dir), "%s", FFDP_TEST_TMP);
	tu_mkdirs(g_dir);
	tu_rng r = tu_rng_make(77);
	test_fields(&r);
	test_affine(&r);
	test_affine_mat(&r);
	return check_done();
}

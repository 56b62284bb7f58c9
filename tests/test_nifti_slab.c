/* ffdp_image_read_slab: every slab of several images (odd sizes, oblique,
 * every datatype, scaled, .nii and .nii.gz, files from nifti_clib and from
 * ffdp's multi-member gzip writer) equals the corresponding planes of the
 * whole read, with the whole grid's geometry for those planes; bad ranges,
 * truncated files and NaN give one clear message; memory is the slab's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nifti2_io.h>

#include "alloc_count.h"
#include "check.h"
#include "ffdp/ffdp.h"
#include "io/nifti_geometry.h"
#include "testutil.h"

static char g_dir[1024];

/* A file written by nifti_clib: random values of type dt on grid g. */
static void write_clib(const char *path, const ffdp_grid *g, int dt, double slope, tu_rng *r)
{
	int64_t dims[8] = {3, g->n[0], g->n[1], g->n[2], 1, 1, 1, 1};
	nifti_image *nim = nifti_make_new_nim(dims, dt, 1);
	ffdp_nifti_set_geometry(nim, g);
	nim->scl_slope = slope, nim->scl_inter = slope != 0.0 ? -3.25 : 0.0;
	int sgn = dt == DT_INT8 || dt == DT_INT16 || dt == DT_INT32 || dt == DT_INT64;
	for (int64_t i = 0; i < nim->nvox; i++) {
		double v = floor(tu_uniform(r) * 200.0) - (sgn ? 100.0 : 0.0);
		/* floats get fractions */
		tu_nifti_store(dt, nim->data, i, dt == DT_FLOAT32 ? v * 0.37 : dt == DT_FLOAT64 ? v * 1.0001 : v);
	}
	if (nifti_set_filenames(nim, path, 0, 1) == 0)
		nifti_image_write(nim);
	nifti_image_free(nim);
}

/* Slab [z0, z1) against the whole read: data bit-equal, grid = the whole
 * grid's for those planes (index -> physical maps agree), range = slab's. */
static int slab_matches(const char *path, const ffdp_volume *whole, int64_t z0, int64_t z1, ffdp_error *err)
{
	ffdp_volume s = {0};
	ffdp_image_info info;
	if (ffdp_image_read_slab(path, z0, z1, 0, &s, &info, err))
		return 0;
	const ffdp_grid *g = &whole->grid;
	int64_t plane = g->n[0] * g->n[1], n = (z1 - z0) * plane;
	int ok = s.grid.n[0] == g->n[0] && s.grid.n[1] == g->n[1] && s.grid.n[2] == z1 - z0 &&
		 memcmp(s.data, whole->data + z0 * plane, (size_t)n * sizeof(float)) == 0;
	ffdp_mat4 A = ffdp_grid_index_to_phys(g), B = ffdp_grid_index_to_phys(&s.grid);
	const double corners[4][3] = {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
	for (int k = 0; k < 4; k++) {
		double ia[3] = {corners[k][0], corners[k][1], corners[k][2] + (double)z0}, pa[3], pb[3];
		ffdp_mat4_apply_point(&A, ia, pa);
		ffdp_mat4_apply_point(&B, corners[k], pb);
		for (int a = 0; a < 3; a++)
			ok = ok && fabs(pa[a] - pb[a]) < 1e-9 * (1.0 + fabs(pa[a]));
	}
	for (int a = 0; a < 3; a++)
		ok = ok && s.grid.spacing[a] == g->spacing[a];
	ok = ok && memcmp(s.grid.dir, g->dir, sizeof(g->dir)) == 0;
	float lo = INFINITY, hi = -INFINITY;
	for (int64_t i = 0; i < n; i++)
		lo = fminf(lo, s.data[i]), hi = fmaxf(hi, s.data[i]);
	ok = ok && info.intensity_min == lo && info.intensity_max == hi && info.dims[2] == g->n[2];
	ffdp_volume_free(&s);
	return ok;
}

/* Every one-plane slab, a few random ranges and the whole range. */
static void test_every_slab(const char *path, tu_rng *r)
{
	ffdp_volume whole = {0};
	ffdp_error err = {0};
	CHECK_OK(ffdp_image_read(path, 0, &whole, NULL, &err), &err, "whole read of %s", path);
	if (!whole.data)
		return;
	int64_t nz = whole.grid.n[2], bad = 0, tried = 0;
	for (int64_t z = 0; z < nz; z++, tried++)
		bad += !slab_matches(path, &whole, z, z + 1, &err);
	for (int k = 0; k < 6; k++, tried++) {
		int64_t a = (int64_t)(tu_uniform(r) * (double)nz), b = (int64_t)(tu_uniform(r) * (double)nz);
		int64_t z0 = a < b ? a : b, z1 = (a < b ? b : a) + 1;
		bad += !slab_matches(path, &whole, z0, z1, &err);
	}
	bad += !slab_matches(path, &whole, 0, nz, &err);
	tried++;
	CHECK(bad == 0, "%s: %lld slabs equal the whole read's planes and geometry (%lld differ%s%s)",
	      strrchr(path, '/') + 1, (long long)tried, (long long)bad, bad ? "; " : "", bad ? err.msg : "");
	ffdp_volume_free(&whole);
}

static void test_datatypes(tu_rng *r)
{
	static const int types[] = {DT_UINT8, DT_INT8,   DT_UINT16, DT_INT16,   DT_UINT32,
				    DT_INT32, DT_UINT64, DT_INT64,  DT_FLOAT32, DT_FLOAT64};
	char path[1200], name[64];
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		ffdp_grid g = tu_random_grid(r, 7 + (int64_t)t, 5 + (int64_t)(t % 3), 9 + (int64_t)(t % 4));
		snprintf(name, sizeof(name), "dt%d%s", types[t], t % 2 ? ".nii.gz" : ".nii");
		write_clib(tu_path(path, sizeof(path), g_dir, name), &g, types[t], t % 3 == 1 ? 0.5 : 0.0, r);
		test_every_slab(path, r);
	}
}

/* ffdp's own writer: float32 gz large enough for several gzip members,
 * int16 scaled (.nii), uint8 scaled (.nii.gz). */
static void test_own_files(tu_rng *r)
{
	static const struct {
		int64_t n[3];
		ffdp_write_type type;
		const char *name;
	} cases[] = {{{101, 103, 107}, FFDP_WRITE_FLOAT32, "members.nii.gz"},
		     {{13, 11, 17}, FFDP_WRITE_INT16, "scaled.nii"},
		     {{9, 14, 5}, FFDP_WRITE_UINT8, "u8.nii.gz"}};
	char path[1200];
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		ffdp_volume v = {0};
		ffdp_error err = {0};
		ffdp_grid g = tu_random_grid(r, cases[k].n[0], cases[k].n[1], cases[k].n[2]);
		ffdp_volume_alloc(&v, &g, &err);
		tu_fill_smooth(r, v.data, g.n, 0.05);
		tu_path(path, sizeof(path), g_dir, cases[k].name);
		CHECK_OK(ffdp_image_write(path, &v, cases[k].type, &err), &err, "wrote %s", cases[k].name);
		test_every_slab(path, r);
		ffdp_volume_free(&v);
	}
}

static void expect_fail(const char *path, int64_t z0, int64_t z1, unsigned flags, const char *want)
{
	ffdp_volume s = {0};
	ffdp_error err = {0};
	ffdp_status st = ffdp_image_read_slab(path, z0, z1, flags, &s, NULL, &err);
	CHECK(st != FFDP_OK && strstr(err.msg, want) && !s.data && !strchr(err.msg, '\n'),
	      "slab [%lld, %lld) of %s refused: \"%s\"", (long long)z0, (long long)z1, strrchr(path, '/') + 1,
	      err.msg);
}

static void truncate_copy(const char *src, const char *dst, double keep)
{
	FILE *f = fopen(src, "rb");
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n);
	size_t got = fread(buf, 1, (size_t)n, f);
	fclose(f);
	f = fopen(dst, "wb");
	fwrite(buf, 1, (size_t)(keep * (double)got), f);
	fclose(f);
	free(buf);
}

static void test_bad_input(tu_rng *r)
{
	char path[1200], cut[1200];
	ffdp_volume v = {0}, s = {0};
	ffdp_error err = {0};
	ffdp_grid g = tu_random_grid(r, 11, 10, 9);
	ffdp_volume_alloc(&v, &g, &err);
	tu_fill_smooth(r, v.data, g.n, 0.05);
	v.data[5 * 110 + 17] = NAN; /* plane 5 */
	tu_path(path, sizeof(path), g_dir, "nan.nii.gz");
	CHECK_OK(ffdp_image_write(path, &v, FFDP_WRITE_FLOAT32, &err), &err, "wrote a file with a NaN in plane 5");
	expect_fail(path, -1, 3, 0, "planes [-1, 3) requested, the image has 9");
	expect_fail(path, 4, 10, 0, "planes [4, 10) requested, the image has 9");
	expect_fail(path, 6, 6, 0, "want 0 <= z0 < z1 <= 9");
	expect_fail(path, 2, -1, 0, "z1 is negative");
	expect_fail(path, 4, 7, 0, "1 voxels are NaN or infinite");
	CHECK_OK(ffdp_image_read_slab(path, 6, 9, 0, &s, NULL, &err), &err, "slab [6, 9) has no NaN: read");
	ffdp_volume_free(&s);
	CHECK_OK(ffdp_image_read_slab(path, 4, 7, FFDP_READ_ALLOW_NONFINITE, &s, NULL, &err), &err,
		 "slab [4, 7) with FFDP_READ_ALLOW_NONFINITE: read");
	CHECK(s.data && isnan(s.data[110 + 17]), "the NaN is in slab plane 1");
	ffdp_volume_free(&s);
	expect_fail(tu_path(path, sizeof(path), g_dir, "missing.nii"), 0, 1, 0, "no such file");

	v.data[5 * 110 + 17] = 1.0f;
	tu_path(path, sizeof(path), g_dir, "plain.nii");
	CHECK_OK(ffdp_image_write(path, &v, FFDP_WRITE_FLOAT32, &err), &err, "wrote plain.nii");
	truncate_copy(path, tu_path(cut, sizeof(cut), g_dir, "cut.nii"), 0.6);
	expect_fail(cut, 0, 2, 0, "truncated");
	tu_path(path, sizeof(path), g_dir, "plain.nii.gz");
	CHECK_OK(ffdp_image_write(path, &v, FFDP_WRITE_FLOAT32, &err), &err, "wrote plain.nii.gz");
	truncate_copy(path, tu_path(cut, sizeof(cut), g_dir, "cut.nii.gz"), 0.5);
	expect_fail(cut, 7, 9, 0, "truncated");
	ffdp_volume_free(&v);
}

/* A slab costs the slab and the reader's chunk buffer (8 MiB), not the volume. */
static void test_memory(tu_rng *r)
{
	char path[1200];
	ffdp_volume v = {0}, s = {0};
	ffdp_error err = {0};
	ffdp_grid g = tu_random_grid(r, 160, 150, 140);
	ffdp_volume_alloc(&v, &g, &err);
	tu_fill_uniform(r, v.data, ffdp_grid_voxels(&g), 0, 1);
	tu_path(path, sizeof(path), g_dir, "big.nii.gz");
	CHECK_OK(ffdp_image_write(path, &v, FFDP_WRITE_FLOAT32, &err), &err, "wrote big.nii.gz (13 MB)");
	size_t whole = (size_t)ffdp_grid_voxels(&g) * sizeof(float), slab = 4 * 160 * 150 * sizeof(float);
	ffdp_volume_free(&v);
	alloc_count_reset();
	CHECK_OK(ffdp_image_read_slab(path, 100, 104, 0, &s, NULL, &err), &err, "slab [100, 104) of big.nii.gz");
	size_t peak = alloc_count_peak_extra();
	CHECK(peak <= slab + (8u << 20) + (64u << 10) && peak < whole,
	      "peak heap %zu B <= slab %zu B + 8 MiB read buffer (the volume is %zu B)", peak, slab, whole);
	ffdp_volume_free(&s);
}

int main(void)
{
	tu_rng r = tu_rng_make(4242);
	snprintf(g_dir, sizeof(g_dir), "%s", FFDP_TEST_TMP);
	tu_mkdirs(g_dir);
	nifti_set_debug_level(0);
	test_datatypes(&r);
	test_own_files(&r);
	test_bad_input(&r);
	test_memory(&r);
	return check_done();
}

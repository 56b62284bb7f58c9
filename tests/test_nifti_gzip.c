/* Parallel gzip writing and the streaming writer.  A .nii.gz decompresses to
 * exactly the bytes of the .nii the same call writes; it is made of several
 * gzip members; 1 and 3 threads write identical files; the streaming writer
 * (planes appended in random bunches, images of every storage type and
 * displacement fields) writes the bytes of ffdp_image_write/ffdp_field_write
 * once decompressed, and a failed stream leaves neither file nor temporary. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static char g_dir[1024];

/* Members of a gzip file: inflate each to its end, count, go on. -1 if corrupt. */
static int count_members(const char *path)
{
	size_t n, pos = 0;
	unsigned char *in = tu_read_file(path, 0, &n), *out = malloc(1 << 16);
	int members = 0;
	while (pos < n) {
		z_stream z;
		memset(&z, 0, sizeof(z));
		inflateInit2(&z, 15 + 16);
		z.next_in = in + pos, z.avail_in = (uInt)(n - pos);
		int rc;
		do {
			z.next_out = out, z.avail_out = 1 << 16;
			rc = inflate(&z, Z_NO_FLUSH);
		} while (rc == Z_OK);
		pos = n - z.avail_in;
		inflateEnd(&z);
		if (rc != Z_STREAM_END) {
			members = -1;
			break;
		}
		members++;
	}
	free(in);
	free(out);
	return members;
}

static const char *P(char *buf, const char *name)
{
	return tu_path(buf, 1200, g_dir, name);
}

static void test_members(tu_rng *r)
{
	char a[1200], b[1200], c[1200];
	ffdp_error err = {0};
	ffdp_volume v = {0};
	ffdp_grid g = tu_random_grid(r, 131, 97, 89); /* 4.5 MB: two members of data */
	ffdp_volume_alloc(&v, &g, &err);
	tu_fill_smooth(r, v.data, g.n, 0.05);
	int threads = omp_get_max_threads();
	omp_set_num_threads(1);
	CHECK_OK(ffdp_image_write(P(a, "t1.nii.gz"), &v, FFDP_WRITE_FLOAT32, &err), &err, "1 thread: t1.nii.gz");
	omp_set_num_threads(3);
	CHECK_OK(ffdp_image_write(P(b, "t3.nii.gz"), &v, FFDP_WRITE_FLOAT32, &err), &err, "3 threads: t3.nii.gz");
	CHECK_OK(ffdp_image_write(P(c, "t3.nii"), &v, FFDP_WRITE_FLOAT32, &err), &err, "3 threads: t3.nii");
	omp_set_num_threads(threads);
	CHECK(tu_same_file_bytes(a, b, 0), "1 and 3 threads write identical .nii.gz files");
	CHECK(tu_same_file_bytes(b, c, 1), ".nii.gz decompresses to the bytes of the .nii");
	int m = count_members(b);
	CHECK(m == 3, "header member + 2 data members: %d members", m);
	ffdp_volume back = {0};
	CHECK_OK(ffdp_image_read(b, 0, &back, NULL, &err), &err, "our reader reads the members");
	CHECK(back.data && !memcmp(back.data, v.data, (size_t)ffdp_grid_voxels(&g) * 4), "voxels bit-equal");
	ffdp_volume_free(&back);
	ffdp_volume_free(&v);
}

/* Stream name with nplanes drawn at random (0..4 per append). */
static ffdp_status stream(const char *path, const ffdp_grid *g, int ncomp, ffdp_write_type type,
			  const ffdp_value_range *range, float *const c[3], int64_t stop, tu_rng *r, ffdp_error *err)
{
	ffdp_image_writer *w = NULL;
	ffdp_status s = ffdp_image_writer_open(path, g, ncomp, type, range, &w, err);
	int64_t plane = g->n[0] * g->n[1];
	for (int64_t z = 0; s == FFDP_OK && z < stop;) {
		int64_t k = (int64_t)(tu_uniform(r) * 5.0);
		k = z + k > stop ? stop - z : k;
		const float *p[3] = {c[0] + z * plane, c[1] ? c[1] + z * plane : NULL, c[2] ? c[2] + z * plane : NULL};
		s = ffdp_image_writer_append(w, p, k, err);
		z += k;
	}
	if (s) {
		ffdp_image_writer_abort(w);
		return s;
	}
	return ffdp_image_writer_commit(w, err);
}

static void test_stream_images(tu_rng *r)
{
	static const ffdp_write_type types[] = {FFDP_WRITE_FLOAT32, FFDP_WRITE_INT16, FFDP_WRITE_UINT8,
						FFDP_WRITE_LABEL16};
	static const char *ext[] = {".nii", ".nii.gz"};
	char a[1200], b[1200], name[64];
	for (int t = 0; t < 4; t++)
		for (int e = 0; e < 2; e++) {
			ffdp_error err = {0};
			ffdp_volume v = {0};
			ffdp_grid g = tu_random_grid(r, 23 + t, 17, 13 + 2 * e);
			ffdp_volume_alloc(&v, &g, &err);
			tu_fill_uniform(r, v.data, ffdp_grid_voxels(&g), -40, 300);
			if (types[t] == FFDP_WRITE_LABEL16)
				for (int64_t i = 0; i < ffdp_grid_voxels(&g); i++)
					v.data[i] = (float)(int)v.data[i];
			ffdp_value_range range;
			ffdp_value_range_scan(v.data, ffdp_grid_voxels(&g), &range);
			snprintf(name, sizeof(name), "whole%d%s", t, ext[e]);
			CHECK_OK(ffdp_image_write(P(a, name), &v, types[t], &err), &err, "wrote %s", name);
			snprintf(name, sizeof(name), "stream%d%s", t, ext[e]);
			float *c[3] = {v.data, NULL, NULL};
			CHECK_OK(stream(P(b, name), &g, 1, types[t], &range, c, g.n[2], r, &err), &err,
				 "streamed %s", name);
			CHECK(tu_same_file_bytes(a, b, 1), "%s: the bytes of ffdp_image_write", name);
			ffdp_volume_free(&v);
		}
}

static void test_stream_fields(tu_rng *r)
{
	static const char *ext[] = {".nii", ".nii.gz"};
	char a[1200], b[1200], name[64];
	for (int e = 0; e < 2; e++)
		for (int nz = 1; nz <= 11; nz += 10) {
			ffdp_error err = {0};
			ffdp_field u = {0};
			ffdp_grid g = tu_random_grid(r, 19, 14, nz);
			ffdp_field_alloc(&u, &g, &err);
			for (int c = 0; c < u.ncomp; c++)
				tu_fill_uniform(r, u.c[c], ffdp_grid_voxels(&g), -3, 3);
			snprintf(name, sizeof(name), "wholeu%d%s", nz, ext[e]);
			CHECK_OK(ffdp_field_write(P(a, name), &u, &err), &err, "wrote %s", name);
			snprintf(name, sizeof(name), "streamu%d%s", nz, ext[e]);
			CHECK_OK(stream(P(b, name), &g, u.ncomp, FFDP_WRITE_FLOAT32, NULL, u.c, nz, r, &err), &err,
				 "streamed %s (%d components)", name, u.ncomp);
			CHECK(tu_same_file_bytes(a, b, 1), "%s: the bytes of ffdp_field_write", name);
			ffdp_field_free(&u);
		}
}

static void test_stream_failures(tu_rng *r)
{
	char a[1200];
	ffdp_error err = {0};
	ffdp_volume v = {0};
	ffdp_grid g = tu_random_grid(r, 12, 9, 8);
	ffdp_volume_alloc(&v, &g, &err);
	tu_fill_uniform(r, v.data, ffdp_grid_voxels(&g), 0, 1);
	float *c[3] = {v.data, NULL, NULL};
	ffdp_status s = stream(P(a, "short.nii.gz"), &g, 1, FFDP_WRITE_FLOAT32, NULL, c, 6, r, &err);
	CHECK(s != FFDP_OK && strstr(err.msg, "only 6 of planes [0, 8) were given") && access(a, F_OK) != 0,
	      "6 of 8 planes: commit fails (\"%s\"), no file", err.msg);
	ffdp_image_writer *w = NULL;
	s = ffdp_image_writer_open(P(a, "int.nii"), &g, 1, FFDP_WRITE_INT16, NULL, &w, &err);
	CHECK(s != FFDP_OK && strstr(err.msg, "needs the value range") && !w, "int16 without a range refused: %s",
	      err.msg);
	s = ffdp_image_writer_open(P(a, "f.nii.gz"), &g, 2, FFDP_WRITE_FLOAT32, NULL, &w, &err);
	CHECK(s != FFDP_OK && strstr(err.msg, "2 components on a 3-D grid"), "2 components on 3-D refused: %s",
	      err.msg);
	s = ffdp_image_writer_open(P(a, "nodir/x.nii.gz"), &g, 1, FFDP_WRITE_FLOAT32, NULL, &w, &err);
	CHECK(s != FFDP_OK && strstr(err.msg, "nodir"), "missing directory refused: %s", err.msg);
	CHECK(ffdp_image_writer_open(P(a, "over.nii"), &g, 1, FFDP_WRITE_FLOAT32, NULL, &w, &err) == FFDP_OK,
	      "open over.nii");
	const float *p[1] = {v.data};
	s = ffdp_image_writer_append(w, p, 9, &err);
	CHECK(s != FFDP_OK && strstr(err.msg, "9 planes past plane 0"), "9 planes of 8 refused: %s", err.msg);
	ffdp_image_writer_abort(w);
	CHECK(access(a, F_OK) != 0, "aborted: no over.nii");
	CHECK(tu_count_temporaries(g_dir) == 0, "no temporaries or part files left in %s", g_dir);
	ffdp_volume_free(&v);
}

int main(void)
{
	tu_rng r = tu_rng_make(777);
	snprintf(g_dir, sizeof(g_dir), "%s", FFDP_TEST_TMP);
	tu_mkdirs(g_dir);
	test_members(&r);
	test_stream_images(&r);
	test_stream_fields(&r);
	test_stream_failures(&r);
	return check_done();
}

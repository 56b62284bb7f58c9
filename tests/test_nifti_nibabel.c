/* An independent reader: nibabel (Debian's /usr/bin/python3) loads what ffdp
 * wrote and compares shape, affine and voxels with what the test expects:
 * the RAS affine diag(-1,-1,1) * index_to_phys(grid), and raw float dumps
 * written here with fwrite. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static const char *script =
    "import sys, numpy as np, nibabel as nib\n"
    "d = sys.argv[1]\n"
    "ok = True\n"
    "def check(cond, what):\n"
    "    global ok\n"
    "    print(('ok   ' if cond else 'FAIL ') + 'nibabel: ' + what)\n"
    "    ok = ok and bool(cond)\n"
    "exp = {}\n"
    "for line in open(d + '/expected.txt'):\n"
    "    w = line.split()\n"
    "    exp[w[0]] = ([int(v) for v in w[1:4]], np.array([float(v) for v in w[4:16]]).reshape(3, 4))\n"
    "def raw(name, n, shape):\n"
    "    a = np.fromfile(d + '/' + name, dtype='<f4')\n"
    "    return a.reshape(shape[::-1]).transpose()  # file is x fastest\n"
    "for key, fname, kind in [('img', 'oblique.nii.gz', 'f32'), ('i16', 'scaled.nii', 'i16'),\n"
    "                         ('warp', 'warp.nii.gz', 'field'), ('big', 'members.nii.gz', 'f32')]:\n"
    "    n, A = exp[key]\n"
    "    im = nib.load(d + '/' + fname)\n"
    "    h = im.header\n"
    "    shape = tuple(n) + ((1, 3) if kind == 'field' else ())\n"
    "    check(im.shape == shape, '%s shape %s == %s' % (fname, im.shape, shape))\n"
    "    err = np.abs(im.affine[:3] - A).max()\n"
    "    check(err < 1e-5, '%s affine (sform) = expected RAS affine, max diff %.2g' % (fname, err))\n"
    "    qerr = np.abs(h.get_qform()[:3] - A).max()\n"
    "    check(qerr < 1e-4 and int(h['qform_code']) == 1 and int(h['sform_code']) == 1,\n"
    "          '%s qform = affine within %.2g, codes 1/1' % (fname, qerr))\n"
    "    check(h.get_xyzt_units()[0] == 'mm', '%s spatial units %s' % (fname, h.get_xyzt_units()[0]))\n"
    "    if kind == 'f32':\n"
    "        data = np.asarray(im.dataobj)\n"
    "        want = raw(fname.split('.')[0] + '.raw', n, tuple(n))\n"
    "        check(data.dtype == np.float32 and np.array_equal(data, want), '%s float32 voxels bit-equal' % "
    "fname)\n"
    "    elif kind == 'i16':\n"
    "        slope = float(im.dataobj.slope)\n"
    "        want = raw('scaled.raw', n, tuple(n))\n"
    "        e = np.abs(im.get_fdata() - want).max()\n"
    "        check(h.get_data_dtype() == np.int16 and e <= slope / 2 * 1.000001 + 1e-4,\n"
    "              '%s int16 scaled: max error %.3g <= slope/2 = %.3g' % (fname, e, slope / 2))\n"
    "    else:\n"
    "        check(h.get_intent()[0] == 'vector', '%s intent %s' % (fname, h.get_intent()[0]))\n"
    "        data = np.asarray(im.dataobj)\n"
    "        same = data.dtype == np.float32\n"
    "        for c in range(3):\n"
    "            same = same and np.array_equal(data[:, :, :, 0, c], raw('warp%d.raw' % c, n, tuple(n)))\n"
    "        check(same, '%s components [..., 0, c] bit-equal to the planes (LPS, unflipped)' % fname)\n"
    "sys.exit(0 if ok else 1)\n";

static void dump_raw(const char *dir, const char *name, const float *x, int64_t n)
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	CHECK(f && fwrite(x, sizeof(float), (size_t)n, f) == (size_t)n && fclose(f) == 0,
	      "dumped %s (%lld floats)", name, (long long)n);
}

/* key nx ny nz, then the 3x4 RAS affine row by row. */
static void expect_line(FILE *f, const char *key, const ffdp_grid *g)
{
	ffdp_mat4 m = ffdp_grid_index_to_phys(g);
	fprintf(f, "%s %lld %lld %lld", key, (long long)g->n[0], (long long)g->n[1], (long long)g->n[2]);
	for (int i = 0; i < 12; i++)
		fprintf(f, " %.17g", (i < 8 ? -1.0 : 1.0) * m.m[i]);
	fprintf(f, "\n");
}

int main(void)
{
	const char *dir = FFDP_TEST_TMP;
	char path[1200], cmd[4096];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
	CHECK(system(cmd) == 0, "made %s", dir);
	ffdp_error err = {0};
	tu_rng r = tu_rng_make(99);
	snprintf(path, sizeof(path), "%s/expected.txt", dir);
	FILE *ex = fopen(path, "w");

	ffdp_volume v = {0};
	ffdp_grid g = tu_random_grid(&r, 14, 11, 9);
	ffdp_volume_alloc(&v, &g, &err);
	tu_fill_smooth(&r, v.data, g.n, 0.05);
	snprintf(path, sizeof(path), "%s/oblique.nii.gz", dir);
	CHECK_OK(ffdp_image_write(path, &v, FFDP_WRITE_FLOAT32, &err), &err, "write oblique float32 image");
	dump_raw(dir, "oblique.raw", v.data, ffdp_grid_voxels(&g));
	expect_line(ex, "img", &g);
	ffdp_volume_free(&v);

	g = tu_random_grid(&r, 10, 12, 7);
	ffdp_volume_alloc(&v, &g, &err);
	tu_fill_uniform(&r, v.data, ffdp_grid_voxels(&g), -250, 3000);
	snprintf(path, sizeof(path), "%s/scaled.nii", dir);
	CHECK_OK(ffdp_image_write(path, &v, FFDP_WRITE_INT16, &err), &err, "write int16 scaled image");
	dump_raw(dir, "scaled.raw", v.data, ffdp_grid_voxels(&g));
	expect_line(ex, "i16", &g);
	ffdp_volume_free(&v);

	ffdp_field u = {0};
	g = tu_random_grid(&r, 9, 8, 6);
	ffdp_field_alloc(&u, &g, &err);
	for (int c = 0; c < 3; c++) {
		char name[32];
		tu_fill_uniform(&r, u.c[c], ffdp_grid_voxels(&g), -4, 4);
		snprintf(name, sizeof(name), "warp%d.raw", c);
		dump_raw(dir, name, u.c[c], ffdp_grid_voxels(&g));
	}
	snprintf(path, sizeof(path), "%s/warp.nii.gz", dir);
	CHECK_OK(ffdp_field_write(path, &u, &err), &err, "write displacement field");
	expect_line(ex, "warp", &g);
	ffdp_field_free(&u);

	/* Several gzip members (4 MiB of data each), appended plane by plane. */
	g = tu_random_grid(&r, 129, 131, 67);
	ffdp_volume_alloc(&v, &g, &err);
	tu_fill_smooth(&r, v.data, g.n, 0.05);
	snprintf(path, sizeof(path), "%s/members.nii.gz", dir);
	ffdp_image_writer *w = NULL;
	CHECK_OK(ffdp_image_writer_open(path, &g, 1, FFDP_WRITE_FLOAT32, NULL, &w, &err), &err, "open members.nii.gz");
	for (int64_t z = 0; w && z < g.n[2]; z++) {
		const float *p[1] = {v.data + z * g.n[0] * g.n[1]};
		ffdp_image_writer_append(w, p, 1, &err);
	}
	CHECK_OK(w ? ffdp_image_writer_commit(w, &err) : FFDP_ERR_IO, &err, "streamed members.nii.gz (4.5 MB)");
	dump_raw(dir, "members.raw", v.data, ffdp_grid_voxels(&g));
	expect_line(ex, "big", &g);
	ffdp_volume_free(&v);
	fclose(ex);

	snprintf(path, sizeof(path), "%s/check_nibabel.py", dir);
	FILE *f = fopen(path, "w");
	fputs(script, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' '%s'", path, dir);
	fflush(stdout);
	int rc = system(cmd);
	CHECK(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0,
	      "nibabel agrees with every file (python exit %d)",
	      rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1);
	return check_done();
}

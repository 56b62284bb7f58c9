/* QC pictures: sizes from the physical extent, every mode's content, an
 * image rotated by 90 degrees (direction matrix) gives the rotated picture,
 * anisotropic spacing is shown to scale, and unwritable paths fail cleanly. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc_count.h"
#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

#define GAP 4

typedef struct pic {
	int64_t w, h;
	uint8_t *rgb;
} pic;

static const uint8_t *px(const pic *p, int64_t x, int64_t y)
{
	return p->rgb + 3 * (y * p->w + x);
}

/* Read an 8-bit RGB PNG back; fmt_ok says the file itself was RGB 8-bit. */
static int read_png(const char *path, pic *p, int *fmt_ok)
{
	png_image im;
	memset(&im, 0, sizeof(im));
	im.version = PNG_IMAGE_VERSION;
	p->rgb = NULL;
	if (!png_image_begin_read_from_file(&im, path))
		return -1;
	*fmt_ok = im.format == PNG_FORMAT_RGB;
	im.format = PNG_FORMAT_RGB;
	p->rgb = malloc(PNG_IMAGE_SIZE(im));
	if (!p->rgb || !png_image_finish_read(&im, NULL, p->rgb, 0, NULL)) {
		free(p->rgb);
		p->rgb = NULL;
		png_image_free(&im);
		return -1;
	}
	p->w = im.width, p->h = im.height;
	return 0;
}

static char *tmp_path(char *buf, const char *name)
{
	snprintf(buf, 4096, "%s/%s", FFDP_TEST_TMP, name);
	return buf;
}

/* Write with ffdp and read back; reports a failure through CHECK. */
static int render(const char *name, const ffdp_volume *a, const ffdp_volume *b, ffdp_qc_mode mode, pic *p)
{
	char path[4096];
	ffdp_error err = {0};
	int fmt_ok = 0;
	memset(p, 0, sizeof(*p));
	ffdp_status st = ffdp_qc_write_png(tmp_path(path, name), a, b, mode, &err);
	if (st) {
		CHECK(0, "write %s: %s", name, err.msg);
		return -1;
	}
	if (read_png(path, p, &fmt_ok) || !fmt_ok) {
		CHECK(0, "%s reads back as 8-bit RGB", name);
		return -1;
	}
	return 0;
}

static int64_t distinct_gray(const pic *p)
{
	int seen[256] = {0};
	int64_t k = 0;
	for (int64_t i = 0; i < p->w * p->h; i++)
		if (!seen[p->rgb[3 * i + 1]]++)
			k++;
	return k;
}

static int is_gray(const uint8_t *c)
{
	return c[0] == c[1] && c[1] == c[2];
}

/* Panel sizes the contract gives: the physical bounding box of the voxel
 * box over the finest spacing, axial (x by y), coronal (x by z), sagittal (y by z). */
static void expected_size(const ffdp_grid *g, int64_t *w, int64_t *h)
{
	double lo[3] = {1e300, 1e300, 1e300}, hi[3] = {-1e300, -1e300, -1e300};
	for (int k = 0; k < 8; k++) {
		double idx[3], p[3];
		for (int a = 0; a < 3; a++)
			idx[a] = (k >> a & 1) ? (double)g->n[a] - 0.5 : -0.5;
		ffdp_grid_point(g, idx, p);
		for (int a = 0; a < 3; a++)
			lo[a] = fmin(lo[a], p[a]), hi[a] = fmax(hi[a], p[a]);
	}
	double s = fmin(g->spacing[0], fmin(g->spacing[1], g->spacing[2]));
	int64_t n[3];
	for (int a = 0; a < 3; a++)
		n[a] = (int64_t)ceil((hi[a] - lo[a]) / s - 1e-6);
	*w = n[0] + n[0] + n[1] + 2 * GAP;
	*h = n[1] > n[2] ? n[1] : n[2];
}

/* Pixels of two pictures, each a panel at its own column offset, related by
 * a map; returns the largest channel difference and counts the differing. */
typedef void (*pixmap)(int64_t c, int64_t r, const int64_t dims[4], int64_t *c2, int64_t *r2);

static int compare_panel(const pic *p, int64_t x0, int64_t w, int64_t h, const pic *q, int64_t x1, pixmap map,
			 const int64_t dims[4], int64_t *ndiff)
{
	int worst = 0;
	*ndiff = 0;
	for (int64_t r = 0; r < h; r++)
		for (int64_t c = 0; c < w; c++) {
			int64_t c2, r2;
			map(c, r, dims, &c2, &r2);
			const uint8_t *u = px(p, x0 + c, r), *v = px(q, x1 + c2, r2);
			int d = 0;
			for (int k = 0; k < 3; k++)
				d = abs((int)u[k] - (int)v[k]) > d ? abs((int)u[k] - (int)v[k]) : d;
			worst = d > worst ? d : worst;
			*ndiff += d > 0;
		}
	return worst;
}

/* dims = {nx, ny, nz}: B rotated by +90 degrees about z relative to A. */
static void map_axial(int64_t c, int64_t r, const int64_t d[4], int64_t *c2, int64_t *r2)
{
	*c2 = r, *r2 = d[1] - 1 - c; /* B axial (c, r) = A axial (r, ny-1-c) */
}
static void map_cor_sag(int64_t c, int64_t r, const int64_t d[4], int64_t *c2, int64_t *r2)
{
	*c2 = d[1] - 1 - c, *r2 = r; /* B coronal (c, r) = A sagittal (ny-1-c, r) */
}
static void map_same(int64_t c, int64_t r, const int64_t d[4], int64_t *c2, int64_t *r2)
{
	(void)d;
	*c2 = c, *r2 = r; /* B sagittal = A coronal */
}

static void check_rotation(const ffdp_volume *a)
{
	/* B: the same voxels with a direction matrix rotating +90 degrees about z
	 * (index x -> LPS +y, index y -> LPS -x) and the origin rotated likewise,
	 * so B(p) = A(R^T p) with the centre fixed at 0. */
	ffdp_volume b = *a;
	static const double R[9] = {0, -1, 0, 1, 0, 0, 0, 0, 1};
	memcpy(b.grid.dir, R, sizeof(R));
	for (int r = 0; r < 3; r++)
		b.grid.origin[r] = R[3 * r] * a->grid.origin[0] + R[3 * r + 1] * a->grid.origin[1] +
				   R[3 * r + 2] * a->grid.origin[2];
	pic pa, pb;
	if (render("rot_a.png", a, NULL, FFDP_QC_GRAY, &pa) || render("rot_b.png", &b, NULL, FFDP_QC_GRAY, &pb))
		return;
	int64_t nx = a->grid.n[0], ny = a->grid.n[1], nz = a->grid.n[2];
	CHECK(pb.w == ny + ny + nx + 2 * GAP && pb.h == (nx > nz ? nx : nz) && pa.w != pb.w,
	      "rotated image: picture %lldx%lld (unrotated %lldx%lld)", (long long)pb.w, (long long)pb.h,
	      (long long)pa.w, (long long)pa.h);
	if (pb.w == ny + ny + nx + 2 * GAP) {
		int64_t dims[4] = {nx, ny, nz, 0}, nd;
		/* A's panels start at 0, nx+G, 2nx+2G; B's at 0, ny+G, 2ny+2G. */
		int w1 = compare_panel(&pb, 0, ny, nx, &pa, 0, map_axial, dims, &nd);
		CHECK(w1 <= 1 && nd < ny * nx / 1000 + 1,
		      "rotated axial panel = unrotated axial turned 90 degrees: max diff %d, %lld pixels differ", w1,
		      (long long)nd);
		int w2 = compare_panel(&pb, ny + GAP, ny, nz, &pa, 2 * nx + 2 * GAP, map_cor_sag, dims, &nd);
		CHECK(w2 <= 1 && nd < ny * nz / 1000 + 1,
		      "rotated coronal panel = unrotated sagittal mirrored: max diff %d, %lld pixels differ", w2,
		      (long long)nd);
		int w3 = compare_panel(&pb, 2 * ny + 2 * GAP, nx, nz, &pa, nx + GAP, map_same, dims, &nd);
		CHECK(w3 <= 1 && nd < nx * nz / 1000 + 1,
		      "rotated sagittal panel = unrotated coronal: max diff %d, %lld pixels differ", w3, (long long)nd);
		/* the same maps on the unrotated picture itself must not hold (the check can fail) */
		int w4 = compare_panel(&pa, 0, nx, nx, &pa, 0, map_axial, dims, &nd);
		CHECK(w4 > 20, "control: the axial panel is not invariant under that turn (max diff %d)", w4);
	}
	free(pa.rgb), free(pb.rgb);
}

/* The same object at 2 mm isotropic and at 2 x 2 x 4 mm shows at the same size and place. */
static void check_anisotropic(void)
{
	ffdp_phantom_opts o = ffdp_phantom_defaults();
	o.n[0] = 64, o.n[1] = 72, o.n[2] = 56, o.noise = 0;
	o.spacing[0] = o.spacing[1] = o.spacing[2] = 2.0;
	ffdp_phantom_opts o4 = o;
	o4.n[2] = 28, o4.spacing[2] = 4.0;
	ffdp_volume iso = {0}, an = {0};
	ffdp_error err = {0};
	CHECK_OK(ffdp_phantom_make(&o, &iso, NULL, NULL, NULL, NULL, &err), &err, "phantom at 2 mm");
	CHECK_OK(ffdp_phantom_make(&o4, &an, NULL, NULL, NULL, NULL, &err), &err, "phantom at 2x2x4 mm");
	pic pi, pa;
	if (!err.code && !render("iso.png", &iso, NULL, FFDP_QC_GRAY, &pi) &&
	    !render("aniso.png", &an, NULL, FFDP_QC_GRAY, &pa)) {
		CHECK(pi.w == pa.w && pi.h == pa.h && pa.h == 72,
		      "2x2x4 mm picture %lldx%lld, same as isotropic (56 slices of 4 mm shown as 112 mm)",
		      (long long)pa.w, (long long)pa.h);
		if (pi.w == pa.w && pi.h == pa.h) {
			double sum = 0, sum_shift = 0;
			for (int64_t y = 0; y < pa.h; y++)
				for (int64_t x = 0; x < pa.w; x++) {
					sum += abs((int)px(&pi, x, y)[1] - (int)px(&pa, x, y)[1]);
					int64_t ys = y + 6 < pa.h ? y + 6 : y;
					sum_shift += abs((int)px(&pi, x, ys)[1] - (int)px(&pa, x, y)[1]);
				}
			double mad = sum / (double)(pa.w * pa.h), mads = sum_shift / (double)(pa.w * pa.h);
			CHECK(mad < 6.0 && mad < 0.5 * mads,
			      "anisotropic vs isotropic: mean |diff| %.2f gray levels (< 6; shifted 6 rows: %.2f)", mad,
			      mads);
		}
		free(pi.rgb), free(pa.rgb);
	}
	ffdp_volume_free(&iso);
	ffdp_volume_free(&an);
}

/* Display orientation: v = x + 2y + 4z (LPS mm) is brightest towards patient
 * left (+x), posterior (+y) and superior (+z).  Axial: left on the right,
 * anterior up, so brightest bottom-right; coronal: left on the right, superior
 * up: top-right; sagittal: anterior on the left, superior up: top-right. */
static void check_orientation(void)
{
	ffdp_grid gr = ffdp_grid_make(30, 34, 26, 1.0, 1.0, 1.0);
	for (int a = 0; a < 3; a++)
		gr.origin[a] = -0.5 * (double)(gr.n[a] - 1);
	ffdp_volume v = {0};
	ffdp_error err = {0};
	CHECK_OK(ffdp_volume_alloc(&v, &gr, &err), &err, "ramp volume");
	if (err.code)
		return;
	for (int64_t z = 0; z < gr.n[2]; z++)
		for (int64_t y = 0; y < gr.n[1]; y++)
			for (int64_t x = 0; x < gr.n[0]; x++) {
				double idx[3] = {(double)x, (double)y, (double)z}, p[3];
				ffdp_grid_point(&gr, idx, p);
				v.data[(z * gr.n[1] + y) * gr.n[0] + x] = (float)(p[0] + 2 * p[1] + 4 * p[2]);
			}
	pic p;
	if (!render("orient.png", &v, NULL, FFDP_QC_GRAY, &p)) {
		int64_t x0[3] = {0, 30 + GAP, 60 + 2 * GAP}, w[3] = {30, 30, 34}, h[3] = {34, 26, 26};
		int want[3] = {3, 1, 1}; /* corner: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right */
		static const char *name[3] = {"axial bottom-right", "coronal top-right", "sagittal top-right"};
		for (int k = 0; k < 3; k++) {
			int best = 0, val[4];
			for (int c = 0; c < 4; c++) {
				val[c] = px(&p, x0[k] + (c & 1 ? w[k] - 2 : 1), c & 2 ? h[k] - 2 : 1)[1];
				best = val[c] > val[best] ? c : best;
			}
			CHECK(best == want[k] && val[want[k]] > val[3 - want[k]] + 100,
			      "orientation: %s brightest (corners %d %d %d %d)", name[k], val[0], val[1], val[2], val[3]);
		}
		free(p.rgb);
	}
	ffdp_volume_free(&v);
}

static int leftovers(const char *dir)
{
	DIR *d = opendir(dir);
	int k = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		k += strstr(e->d_name, ".tmp-") != NULL;
	if (d)
		closedir(d);
	return k;
}

static void check_unwritable(const ffdp_volume *a)
{
	char path[8192], file[4096];
	ffdp_error err = {0};
	struct stat sb;
	FILE *f = fopen(tmp_path(file, "plain_file"), "w");
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s/qc.png", file);
	ffdp_status st = ffdp_qc_write_png(path, a, NULL, FFDP_QC_GRAY, &err);
	CHECK(st == FFDP_ERR_IO && strstr(err.msg, path) && stat(path, &sb) != 0,
	      "path under a plain file refused, nothing written: %s", err.msg);

	snprintf(path, sizeof(path), "%s/no/such/dir/qc.png", FFDP_TEST_TMP);
	ffdp_error_clear(&err);
	st = ffdp_qc_write_png(path, a, NULL, FFDP_QC_GRAY, &err);
	CHECK(st == FFDP_ERR_IO && strstr(err.msg, path), "missing directory refused: %s", err.msg);

	/* A directory as the target: the temporary is written, the rename fails, the temporary must go. */
	mkdir(tmp_path(path, "a_directory"), 0777);
	int before = leftovers(FFDP_TEST_TMP);
	ffdp_error_clear(&err);
	st = ffdp_qc_write_png(path, a, NULL, FFDP_QC_GRAY, &err);
	int after = leftovers(FFDP_TEST_TMP);
	CHECK(st == FFDP_ERR_IO && strstr(err.msg, path) && after == before && stat(path, &sb) == 0 &&
		      S_ISDIR(sb.st_mode),
	      "directory as target refused, no temporary left (%d before, %d after): %s", before, after, err.msg);

	ffdp_error_clear(&err);
	st = ffdp_qc_write_png(tmp_path(path, "x.png"), a, NULL, FFDP_QC_OVERLAY, &err);
	CHECK(st == FFDP_ERR_ARG && stat(path, &sb) != 0, "overlay without b refused: %s", err.msg);
	ffdp_error_clear(&err);
	st = ffdp_qc_write_png(path, NULL, NULL, FFDP_QC_GRAY, &err);
	CHECK(st == FFDP_ERR_ARG, "missing image refused: %s", err.msg);
	ffdp_error_clear(&err);
	st = ffdp_qc_write_png(path, a, a, (ffdp_qc_mode)42, &err);
	CHECK(st == FFDP_ERR_ARG && stat(path, &sb) != 0, "unknown mode refused: %s", err.msg);
}

int main(void)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", FFDP_TEST_TMP);
	for (char *s = dir + 1; *s; s++)
		if (*s == '/') {
			*s = '\0';
			mkdir(dir, 0777);
			*s = '/';
		}
	mkdir(dir, 0777);

	ffdp_error err = {0};
	ffdp_phantom_opts o = ffdp_phantom_defaults();
	o.n[0] = 64, o.n[1] = 76, o.n[2] = 56;
	o.spacing[0] = o.spacing[1] = o.spacing[2] = 2.0;
	ffdp_volume f = {0}, m = {0}, fl = {0};
	CHECK_OK(ffdp_phantom_make(&o, &f, &m, &fl, NULL, NULL, &err), &err, "phantom 64x76x56 at 2 mm");
	if (err.code)
		return check_done();
	int64_t nx = 64, ny = 76, nz = 56, ew = nx + nx + ny + 2 * GAP, eh = ny;

	/* GRAY: one pixel per voxel for an axis-aligned isotropic image */
	pic g, gm, ov, ovs, ck, lb, lb0;
	if (!render("gray.png", &f, NULL, FFDP_QC_GRAY, &g)) {
		int64_t ng = 0;
		for (int64_t i = 0; i < g.w * g.h; i++)
			ng += is_gray(g.rgb + 3 * i);
		CHECK(g.w == ew && g.h == eh, "gray: %lldx%lld, expected %lldx%lld", (long long)g.w, (long long)g.h,
		      (long long)ew, (long long)eh);
		CHECK(ng == g.w * g.h && distinct_gray(&g) > 100, "gray: all pixels gray, %lld gray levels",
		      (long long)distinct_gray(&g));
		int64_t dark = 0;
		for (int64_t y = 0; y < g.h; y++)
			for (int64_t x = 0; x < g.w; x++)
				dark += px(&g, x, y)[0] < 8;
		CHECK(dark > g.w * g.h / 5 && dark < g.w * g.h * 4 / 5, "gray: background and gaps dark "
		      "(%lld of %lld pixels below 8)", (long long)dark, (long long)(g.w * g.h));
	}
	CHECK(render("gray_m.png", &m, NULL, FFDP_QC_GRAY, &gm) == 0, "gray of the moving image");

	/* OVERLAY: an image with itself is gray everywhere; fixed with moving is not */
	if (!render("overlay_self.png", &f, &f, FFDP_QC_OVERLAY, &ovs)) {
		int64_t bad = 0;
		for (int64_t i = 0; i < ovs.w * ovs.h; i++) {
			const uint8_t *c = ovs.rgb + 3 * i;
			bad += c[0] != c[2] || abs((int)c[0] - (int)c[1]) > 1;
		}
		CHECK(ovs.w == ew && ovs.h == eh && bad == 0 && distinct_gray(&ovs) > 100,
		      "overlay of an image with itself: gray on all pixels (%lld not)", (long long)bad);
	}
	if (!render("overlay.png", &f, &m, FFDP_QC_OVERLAY, &ov) && g.rgb && gm.rgb) {
		int64_t bad = 0, differ = 0;
		for (int64_t i = 0; i < ov.w * ov.h; i++) {
			const uint8_t *c = ov.rgb + 3 * i;
			bad += c[0] != gm.rgb[3 * i] || c[2] != gm.rgb[3 * i] || c[1] != g.rgb[3 * i];
			differ += abs((int)c[0] - (int)c[1]) > 40;
		}
		CHECK(bad == 0 && differ > 100,
		      "overlay fixed/moving: G = gray of fixed, R = B = gray of moving (%lld not); %lld pixels "
		      "coloured where they differ", (long long)bad, (long long)differ);
	}

	/* CHECKER: alternate tiles are the gray pictures of a and b */
	if (!render("checker.png", &f, &m, FFDP_QC_CHECKER, &ck) && g.rgb && gm.rgb) {
		int64_t x0s[3] = {0, nx + GAP, 2 * nx + 2 * GAP}, ws[3] = {nx, nx, ny}, hs[3] = {ny, nz, nz};
		int64_t wrong = 0, from_b = 0;
		for (int k = 0; k < 3; k++) {
			int64_t tile = (ws[k] > hs[k] ? ws[k] : hs[k]) / 8;
			for (int64_t y = 0; y < hs[k]; y++)
				for (int64_t x = 0; x < ws[k]; x++) {
					const pic *src = ((x / tile + y / tile) & 1) ? &gm : &g;
					wrong += memcmp(px(&ck, x0s[k] + x, y), px(src, x0s[k] + x, y), 3) != 0;
					from_b += src == &gm && memcmp(px(&gm, x0s[k] + x, y), px(&g, x0s[k] + x, y), 3);
				}
		}
		CHECK(ck.w == ew && wrong == 0 && from_b > 100,
		      "checker: tiles alternate a and b exactly (%lld wrong; %lld pixels where b shows and differs)",
		      (long long)wrong, (long long)from_b);
	}

	/* LABELS: outlines in colour, gray of a elsewhere; an empty label map draws nothing */
	ffdp_volume zero = {0};
	CHECK_OK(ffdp_volume_alloc(&zero, &f.grid, &err), &err, "empty label map");
	if (!render("labels.png", &f, &fl, FFDP_QC_LABELS, &lb) && !render("labels0.png", &f, &zero, FFDP_QC_LABELS,
									 &lb0) && g.rgb) {
		int64_t coloured = 0, other = 0, pale = 0;
		for (int64_t i = 0; i < lb.w * lb.h; i++) {
			const uint8_t *c = lb.rgb + 3 * i;
			int mx = c[0] > c[1] ? c[0] : c[1], mn = c[0] < c[1] ? c[0] : c[1];
			mx = c[2] > mx ? c[2] : mx, mn = c[2] < mn ? c[2] : mn;
			if (!is_gray(c))
				coloured++, pale += mx - mn < 100;
			else
				other += memcmp(c, g.rgb + 3 * i, 3) != 0;
		}
		CHECK(coloured > 500 && pale == 0 && other == 0,
		      "labels: %lld outline pixels in saturated colours (%lld pale), gray of a elsewhere (%lld not)",
		      (long long)coloured, (long long)pale, (long long)other);
		CHECK(memcmp(lb0.rgb, g.rgb, (size_t)(g.w * g.h * 3)) == 0, "labels: an all-zero map draws no outline");
		free(lb.rgb), free(lb0.rgb);
	}
	ffdp_volume_free(&zero);
	free(g.rgb), free(gm.rgb), free(ov.rgb), free(ovs.rgb), free(ck.rgb);

	check_orientation();
	check_rotation(&f);
	check_anisotropic();

	/* random oblique, anisotropic grid: size from the physical extent */
	tu_rng rng = tu_rng_make(5);
	ffdp_volume ob = {0};
	ffdp_grid og = tu_random_grid(&rng, 40, 34, 28);
	CHECK_OK(ffdp_volume_alloc(&ob, &og, &err), &err, "random oblique volume");
	tu_fill_smooth(&rng, ob.data, og.n, 0.01);
	pic po;
	if (!render("oblique.png", &ob, &ob, FFDP_QC_CHECKER, &po)) {
		int64_t w, h;
		expected_size(&og, &w, &h);
		CHECK(po.w == w && po.h == h && distinct_gray(&po) > 50,
		      "oblique anisotropic: %lldx%lld, expected %lldx%lld from the extent, %lld levels", (long long)po.w,
		      (long long)po.h, (long long)w, (long long)h, (long long)distinct_gray(&po));
		free(po.rgb);
	}
	ffdp_volume_free(&ob);

	/* 2-D: one axial panel */
	ffdp_phantom_opts o2 = o;
	o2.n[2] = 1;
	ffdp_volume s2 = {0};
	CHECK_OK(ffdp_phantom_make(&o2, &s2, NULL, NULL, NULL, NULL, &err), &err, "2-D phantom");
	pic p2;
	if (!err.code && !render("slice.png", &s2, &s2, FFDP_QC_OVERLAY, &p2)) {
		CHECK(p2.w == nx && p2.h == ny && distinct_gray(&p2) > 50, "2-D: one %lldx%lld panel",
		      (long long)p2.w, (long long)p2.h);
		free(p2.rgb);
	}
	ffdp_volume_free(&s2);

	check_unwritable(&f);
	ffdp_volume_free(&f);
	ffdp_volume_free(&m);
	ffdp_volume_free(&fl);
	return check_done();
}

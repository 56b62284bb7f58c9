/* Quality-control pictures: three orthogonal planes through the centre of
 * image a, resampled from physical coordinates onto axis-aligned LPS planes,
 * written as an 8-bit RGB PNG.
 *
 * Display (radiological, as most scanners show it):
 *   axial     columns +x (patient left on the right), rows +y (anterior up)
 *   coronal   columns +x (patient left on the right), rows -z (superior up)
 *   sagittal  columns +y (anterior on the left),      rows -z (superior up)
 * Square pixels of the finest spacing of a (coarser only if a panel side
 * would pass QC_MAX_SIDE), covering a's physical bounding box, so that an
 * axis-aligned isotropic image shows one pixel per voxel.  A 2-D image
 * (nz = 1) gives the one panel its plane lies closest to.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ffdp/qc.h"

#define QC_GAP 4            /* black pixels between panels */
#define QC_MAX_SIDE 2048    /* largest panel side, pixels */
#define QC_SAMPLES 262144   /* voxels read for the percentiles */
#define QC_TILES 8          /* checkerboard tiles across a panel */

typedef struct qc_panel {
	int64_t w, h;
	double col[3], row[3]; /* LPS unit steps along a column and down a row */
	double p0[3];          /* LPS centre of pixel (0, 0) */
} qc_panel;

/* An image as sampled here: its physical-to-index map and window. */
typedef struct qc_src {
	const ffdp_volume *v;
	ffdp_mat4 p2i;
	float lo, hi;
} qc_src;

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* 1st and 99th percentile of a strided subsample; a constant image gets a
 * window centred on its value (mid-gray). */
static ffdp_status qc_window(qc_src *s, ffdp_error *err)
{
	int64_t n = ffdp_grid_voxels(&s->v->grid), stride = n / QC_SAMPLES + 1, m = 0;
	float *buf = malloc((size_t)(n / stride + 1) * sizeof(float));
	if (!buf)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "qc: cannot allocate the percentile sample");
	for (int64_t i = 0; i < n; i += stride)
		if (isfinite(s->v->data[i]))
			buf[m++] = s->v->data[i];
	float lo = 0.0f, hi = 0.0f;
	if (m > 0) {
		qsort(buf, (size_t)m, sizeof(float), cmp_float);
		lo = buf[(int64_t)(0.01 * (double)(m - 1))];
		hi = buf[(int64_t)(0.99 * (double)(m - 1))];
	}
	free(buf);
	if (!(hi > lo))
		lo -= 0.5f, hi = lo + 1.0f;
	s->lo = lo, s->hi = hi;
	return FFDP_OK;
}

/* Value at physical p: NaN outside the voxel box (index -0.5 .. n-0.5),
 * else trilinear (or nearest) with the index clamped to the voxel centres. */
static float qc_sample(const qc_src *s, const double p[3], int nearest)
{
	const ffdp_grid *g = &s->v->grid;
	double c[3];
	int64_t i0[3], i1[3];
	float f[3];
	ffdp_mat4_apply_point(&s->p2i, p, c);
	for (int a = 0; a < 3; a++) {
		double top = (double)(g->n[a] - 1);
		if (!(c[a] >= -0.5 && c[a] <= top + 0.5))
			return NAN;
		c[a] = nearest ? floor(c[a] + 0.5) : c[a];
		c[a] = c[a] < 0.0 ? 0.0 : c[a] > top ? top : c[a];
		i0[a] = (int64_t)c[a];
		i1[a] = i0[a] < g->n[a] - 1 ? i0[a] + 1 : i0[a];
		f[a] = (float)(c[a] - (double)i0[a]);
	}
	const float *d = s->v->data;
	int64_t nx = g->n[0], nxy = g->n[0] * g->n[1];
	float v = 0.0f;
	for (int k = 0; k < 8; k++) {
		float w = (k & 1 ? f[0] : 1 - f[0]) * (k & 2 ? f[1] : 1 - f[1]) * (k & 4 ? f[2] : 1 - f[2]);
		if (w != 0.0f)
			v += w * d[(k & 4 ? i1[2] : i0[2]) * nxy + (k & 2 ? i1[1] : i0[1]) * nx +
				   (k & 1 ? i1[0] : i0[0])];
	}
	return v;
}

/* Windowed to [0, 1]; NaN (outside the image) is black. */
static float qc_level(const qc_src *s, float v)
{
	if (isnan(v))
		return 0.0f;
	float t = (v - s->lo) / (s->hi - s->lo);
	return t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
}

/* The panels of a: axial, coronal, sagittal (or the one of a 2-D image). */
static int qc_layout(const ffdp_grid *g, qc_panel pan[3])
{
	int dim = ffdp_grid_dim(g);
	double lo[3] = {1e300, 1e300, 1e300}, hi[3] = {-1e300, -1e300, -1e300}, c[3], hpix = 1e300;
	for (int k = 0; k < 8; k++) {
		double idx[3], p[3];
		for (int a = 0; a < 3; a++)
			idx[a] = (k >> a & 1) ? (double)g->n[a] - 0.5 : -0.5;
		ffdp_grid_point(g, idx, p);
		for (int a = 0; a < 3; a++)
			lo[a] = fmin(lo[a], p[a]), hi[a] = fmax(hi[a], p[a]);
	}
	for (int a = 0; a < dim; a++)
		hpix = fmin(hpix, g->spacing[a]);
	for (int a = 0; a < 3; a++)
		hpix = fmax(hpix, (hi[a] - lo[a]) / QC_MAX_SIDE);
	int64_t np[3];
	for (int a = 0; a < 3; a++) {
		np[a] = (int64_t)ceil((hi[a] - lo[a]) / hpix - 1e-6);
		np[a] = np[a] < 1 ? 1 : np[a];
	}
	ffdp_grid_center(g, c);

	/* normal axis, column axis (+1), row axis (+1 or -1 for superior up) */
	static const int spec[3][4] = {{2, 0, 1, 1}, {1, 0, 2, -1}, {0, 1, 2, -1}};
	int first = 0, count = 3;
	if (dim == 2) {
		/* the panel whose normal is nearest the slice normal (index axis 2) */
		int best = 0;
		for (int r = 1; r < 3; r++)
			if (fabs(g->dir[3 * r + 2]) > fabs(g->dir[3 * best + 2]))
				best = r;
		first = 2 - best, count = 1;
	}
	for (int k = 0; k < count; k++) {
		const int *sp = spec[first + k];
		qc_panel *q = &pan[k];
		memset(q, 0, sizeof(*q));
		q->col[sp[1]] = hpix;
		q->row[sp[2]] = sp[3] * hpix;
		q->w = np[sp[1]], q->h = np[sp[2]];
		for (int a = 0; a < 3; a++)
			q->p0[a] = c[a] + (0.5 - 0.5 * (double)q->w) * q->col[a] + (0.5 - 0.5 * (double)q->h) * q->row[a];
	}
	return count;
}

/* Saturated colours, none gray, so outlines never read as image. */
static const uint8_t qc_palette[12][3] = {
	{255, 0, 0},   {0, 255, 0},   {0, 96, 255},   {255, 255, 0}, {255, 0, 255}, {0, 255, 255},
	{255, 128, 0}, {160, 0, 255}, {128, 255, 128}, {255, 128, 192}, {128, 64, 0}, {128, 128, 255},
};

static void qc_gray(uint8_t *px, float t)
{
	px[0] = px[1] = px[2] = (uint8_t)lrintf(255.0f * t);
}

/* Draw one panel at column x0 of an RGB canvas of width cw. */
static ffdp_status qc_draw(const qc_panel *q, const qc_src *a, const qc_src *b, ffdp_qc_mode mode, uint8_t *rgb,
			   int64_t cw, int64_t x0, ffdp_error *err)
{
	int64_t w = q->w, h = q->h;
	float *va = malloc((size_t)(w * h) * sizeof(float));
	float *vb = mode == FFDP_QC_GRAY ? NULL : malloc((size_t)(w * h) * sizeof(float));
	if (!va || (mode != FFDP_QC_GRAY && !vb)) {
		free(va), free(vb);
		return ffdp_fail(err, FFDP_ERR_NOMEM, "qc: cannot allocate a %lldx%lld panel", (long long)w,
				 (long long)h);
	}
#pragma omp parallel for schedule(static)
	for (int64_t j = 0; j < h; j++)
		for (int64_t i = 0; i < w; i++) {
			double p[3];
			for (int c = 0; c < 3; c++)
				p[c] = q->p0[c] + (double)i * q->col[c] + (double)j * q->row[c];
			va[j * w + i] = qc_level(a, qc_sample(a, p, 0));
			if (vb && mode == FFDP_QC_LABELS) {
				float l = qc_sample(b, p, 1);
				vb[j * w + i] = isnan(l) ? 0.0f : l;
			} else if (vb) {
				vb[j * w + i] = qc_level(b, qc_sample(b, p, 0));
			}
		}
	int64_t tile = (w > h ? w : h) / QC_TILES;
	tile = tile < 1 ? 1 : tile;
#pragma omp parallel for schedule(static)
	for (int64_t j = 0; j < h; j++)
		for (int64_t i = 0; i < w; i++) {
			uint8_t *px = rgb + 3 * (j * cw + x0 + i);
			float ta = va[j * w + i];
			if (mode == FFDP_QC_GRAY) {
				qc_gray(px, ta);
			} else if (mode == FFDP_QC_OVERLAY) {
				uint8_t m = (uint8_t)lrintf(255.0f * vb[j * w + i]);
				px[0] = m, px[1] = (uint8_t)lrintf(255.0f * ta), px[2] = m;
			} else if (mode == FFDP_QC_CHECKER) {
				qc_gray(px, ((i / tile + j / tile) & 1) ? vb[j * w + i] : ta);
			} else {
				/* a label pixel with a differing 4-neighbour is on an outline */
				long l = lrintf(vb[j * w + i]);
				int edge = 0;
				if (l != 0) {
					edge = (i > 0 && lrintf(vb[j * w + i - 1]) != l) ||
					       (i + 1 < w && lrintf(vb[j * w + i + 1]) != l) ||
					       (j > 0 && lrintf(vb[(j - 1) * w + i]) != l) ||
					       (j + 1 < h && lrintf(vb[(j + 1) * w + i]) != l);
				}
				if (edge)
					memcpy(px, qc_palette[((l - 1) % 12 + 12) % 12], 3);
				else
					qc_gray(px, ta);
			}
		}
	free(va), free(vb);
	return FFDP_OK;
}

/* libpng reports errors by longjmp; keep its message for ours. */
static void qc_png_error(png_structp png, png_const_charp msg)
{
	char *buf = png_get_error_ptr(png);
	snprintf(buf, 256, "%s", msg);
	png_longjmp(png, 1);
}

static void qc_png_warning(png_structp png, png_const_charp msg)
{
	(void)png, (void)msg;
}

/* Encode rgb (w x h) to fp; 0 on success, else msg (non-empty) says why. */
static int qc_png_encode(FILE *fp, const uint8_t *rgb, int64_t w, int64_t h, char msg[256])
{
	snprintf(msg, 256, "libpng failed");
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, msg, qc_png_error, qc_png_warning);
	if (!png)
		return -1;
	png_infop info = png_create_info_struct(png);
	if (!info) {
		png_destroy_write_struct(&png, NULL);
		return -1;
	}
	/* png and info are not changed after this point, so they survive the longjmp. */
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		return -1;
	}
	png_init_io(png, fp);
	png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
		     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (int64_t j = 0; j < h; j++)
		png_write_row(png, rgb + 3 * j * w);
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	msg[0] = '\0';
	return 0;
}

/* Write to PATH.tmp-XXXXXX beside the target, then rename over it.
 * (A private copy until io/ has a shared atomic-file helper.) */
static ffdp_status qc_write_file(const char *path, const uint8_t *rgb, int64_t w, int64_t h, ffdp_error *err)
{
	size_t len = strlen(path);
	char *tmp = malloc(len + 16), msg[256] = "";
	if (!tmp)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory", path);
	snprintf(tmp, len + 16, "%s.tmp-XXXXXX", path);
	int fd = mkstemp(tmp);
	if (fd < 0) {
		int e = errno;
		free(tmp);
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s", path, strerror(e));
	}
	fchmod(fd, 0644); /* mkstemp makes 0600; a picture is for sharing */
	FILE *fp = fdopen(fd, "wb");
	if (!fp) {
		snprintf(msg, sizeof(msg), "%s", strerror(errno));
		close(fd);
	} else {
		if (qc_png_encode(fp, rgb, w, h, msg) == 0 && (fflush(fp) != 0 || ferror(fp)))
			snprintf(msg, sizeof(msg), "%s", strerror(errno));
		if (fclose(fp) != 0 && !msg[0])
			snprintf(msg, sizeof(msg), "%s", strerror(errno));
		if (!msg[0] && rename(tmp, path) != 0)
			snprintf(msg, sizeof(msg), "%s", strerror(errno));
	}
	if (msg[0])
		unlink(tmp);
	free(tmp);
	return msg[0] ? ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s", path, msg) : FFDP_OK;
}

static ffdp_status qc_check_image(const ffdp_volume *v, const char *name, const char *path, ffdp_error *err)
{
	if (!v || !v->data)
		return ffdp_fail(err, FFDP_ERR_ARG, "qc picture %s: image %s is missing", path, name);
	ffdp_error e = {0};
	if (ffdp_grid_check(&v->grid, &e))
		return ffdp_fail(err, FFDP_ERR_ARG, "qc picture %s: image %s: %s", path, name, e.msg);
	return FFDP_OK;
}

ffdp_status ffdp_qc_write_png(const char *path, const ffdp_volume *a, const ffdp_volume *b, ffdp_qc_mode mode,
			      ffdp_error *err)
{
	if (!path || !path[0])
		return ffdp_fail(err, FFDP_ERR_ARG, "qc picture: no output path");
	if (mode != FFDP_QC_GRAY && mode != FFDP_QC_OVERLAY && mode != FFDP_QC_CHECKER && mode != FFDP_QC_LABELS)
		return ffdp_fail(err, FFDP_ERR_ARG, "qc picture %s: unknown mode %d", path, (int)mode);
	ffdp_status st = qc_check_image(a, "a", path, err);
	if (!st && mode != FFDP_QC_GRAY)
		st = qc_check_image(b, "b (needed by this mode)", path, err);
	if (st)
		return st;

	qc_src sa = {a, ffdp_grid_phys_to_index(&a->grid), 0, 1}, sb = sa;
	st = qc_window(&sa, err);
	if (!st && mode != FFDP_QC_GRAY) {
		sb.v = b, sb.p2i = ffdp_grid_phys_to_index(&b->grid);
		if (mode != FFDP_QC_LABELS)
			st = qc_window(&sb, err);
	}
	if (st)
		return st;

	qc_panel pan[3];
	int np = qc_layout(&a->grid, pan);
	int64_t cw = QC_GAP * (np - 1), ch = 0;
	for (int k = 0; k < np; k++)
		cw += pan[k].w, ch = pan[k].h > ch ? pan[k].h : ch;
	uint8_t *rgb = calloc((size_t)(cw * ch), 3);
	if (!rgb)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "qc picture %s: cannot allocate %lldx%lld pixels", path,
				 (long long)cw, (long long)ch);
	for (int k = 0, x0 = 0; k < np && !st; x0 += (int)pan[k].w + QC_GAP, k++)
		st = qc_draw(&pan[k], &sa, &sb, mode, rgb, cw, x0, err);
	if (!st)
		st = qc_write_file(path, rgb, cw, ch, err);
	free(rgb);
	return st;
}

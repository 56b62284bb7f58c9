/* Writing NIfTI-1 images (NIfTI-2 when a dimension exceeds 32767). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ffdp/io.h"
#include "io/atomic_file.h"
#include "io/nifti_internal.h"

int ffdp_nifti_write_name_ok(const char *path)
{
	const char *ext = ffdp_path_extension(path);
	return strcmp(ext, ".nii") == 0 || strcmp(ext, ".nii.gz") == 0;
}

static int needs_nifti2(const nifti_image *nim)
{
	for (int i = 1; i <= 7; i++)
		if (nim->dim[i] > 32767)
			return 1;
	return 0;
}

/* gzip keeps the uncompressed length mod 2^32 in its last four bytes. */
static int gzip_length_matches(const char *tmp, int64_t expect)
{
	unsigned char head[2], tail[4];
	FILE *f = fopen(tmp, "rb");
	if (!f)
		return 0;
	int ok = fread(head, 1, 2, f) == 2 && head[0] == 0x1f && head[1] == 0x8b && fseek(f, -4, SEEK_END) == 0 &&
		 fread(tail, 1, 4, f) == 4;
	fclose(f);
	uint32_t isize = (uint32_t)tail[0] | (uint32_t)tail[1] << 8 | (uint32_t)tail[2] << 16 | (uint32_t)tail[3] << 24;
	return ok && isize == (uint32_t)((uint64_t)expect & 0xffffffffu);
}

/* nifti_image_write returns nothing: read the temporary's header back and
 * check its length before it may replace the target. */
static ffdp_status verify_written(const nifti_image *nim, const char *tmp, const char *path, ffdp_error *err)
{
	struct stat st;
	if (stat(tmp, &st) != 0 || st.st_size == 0)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: nothing was written (disk full or no permission?)",
				 path);
	nifti_image *back = nifti_image_read(tmp, 0);
	if (!back)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: the written header does not read back", path);
	int same = back->datatype == nim->datatype;
	for (int i = 0; i <= 7; i++)
		same = same && back->dim[i] == nim->dim[i];
	int64_t expect = back->iname_offset + nim->nvox * (int64_t)nim->nbyper;
	nifti_image_free(back);
	if (!same)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: the written header does not match", path);
	int complete = nifti_is_gzfile(tmp) ? gzip_length_matches(tmp, expect) : (int64_t)st.st_size == expect;
	if (!complete)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: the file came out incomplete (disk full?)", path);
	return FFDP_OK;
}

ffdp_status ffdp_nifti_write_verified(nifti_image *nim, const nifti_brick_list *nbl, const char *path,
				      ffdp_error *err)
{
	ffdp_atomic_file a;
	ffdp_status s = ffdp_atomic_begin(&a, path, err);
	if (s)
		return s;
	free(nim->fname);
	free(nim->iname);
	nim->fname = nifti_strdup(a.tmp);
	nim->iname = nifti_strdup(a.tmp);
	nim->nifti_type = needs_nifti2(nim) ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
	nifti_set_debug_level(0);
	if (!nim->fname || !nim->iname) {
		ffdp_atomic_abort(&a);
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory", path);
	}
	if (nbl)
		nifti_image_write_bricks(nim, nbl);
	else
		nifti_image_write(nim);
	s = verify_written(nim, a.tmp, path, err);
	if (s) {
		ffdp_atomic_abort(&a);
		return s;
	}
	return ffdp_atomic_commit(&a, err);
}

/* ---- choosing the stored representation ---- */

typedef struct scan_result {
	int64_t nonfinite;
	double min, max;
	int integral; /* every value is a whole number */
} scan_result;

static scan_result scan(const float *x, int64_t n)
{
	int64_t bad = 0, frac = 0;
	double lo = INFINITY, hi = -INFINITY;
#pragma omp parallel for reduction(+ : bad, frac) reduction(min : lo) reduction(max : hi)
	for (int64_t i = 0; i < n; i++) {
		float v = x[i];
		if (!isfinite(v)) {
			bad++;
			continue;
		}
		lo = v < lo ? v : lo;
		hi = v > hi ? v : hi;
		frac += v != nearbyintf(v);
	}
	scan_result r = {bad, lo, hi, frac == 0};
	if (n == 0 || lo > hi)
		r.min = r.max = 0.0;
	return r;
}

/* Scaled integer storage: q = round((x - inter) / slope), x ~ q*slope + inter.
 * slope and inter are rounded to float first (NIfTI-1 stores them so) and
 * the range keeps a step of margin at each end, so nothing is clipped. */
static void choose_scaling(const scan_result *r, double qlo, double qhi, int integral_fits, float *slope,
			   float *inter)
{
	if (integral_fits) {
		*slope = 1.0f, *inter = 0.0f;
		return;
	}
	double span = r->max - r->min;
	*slope = span > 0 ? (float)(span / (qhi - qlo - 2.0)) : 1.0f;
	if (!(*slope > 0.0f) || !isfinite(*slope))
		*slope = 1.0f;
	*inter = (float)(qlo >= 0 ? r->min - *slope : 0.5 * (r->min + r->max));
}

static void quantise_i16(const float *x, int16_t *q, int64_t n, float slope, float inter)
{
#pragma omp parallel for
	for (int64_t i = 0; i < n; i++) {
		double v = nearbyint(((double)x[i] - inter) / slope);
		q[i] = (int16_t)(v < -32768.0 ? -32768.0 : v > 32767.0 ? 32767.0 : v);
	}
}

static void quantise_u8(const float *x, uint8_t *q, int64_t n, float slope, float inter)
{
#pragma omp parallel for
	for (int64_t i = 0; i < n; i++) {
		double v = nearbyint(((double)x[i] - inter) / slope);
		q[i] = (uint8_t)(v < 0.0 ? 0.0 : v > 255.0 ? 255.0 : v);
	}
}

static void round_labels_i16(const float *x, int16_t *q, int64_t n)
{
#pragma omp parallel for
	for (int64_t i = 0; i < n; i++)
		q[i] = (int16_t)lround(x[i]);
}

static void round_labels_i32(const float *x, int32_t *q, int64_t n)
{
#pragma omp parallel for
	for (int64_t i = 0; i < n; i++)
		q[i] = (int32_t)lround(x[i]);
}

/* Fill nim->datatype, scl_* and a converted buffer (*owned, NULL for float32). */
static ffdp_status encode(const ffdp_volume *v, ffdp_write_type type, const char *path, nifti_image *nim,
			  void **owned, ffdp_error *err)
{
	int64_t n = ffdp_grid_voxels(&v->grid);
	*owned = NULL;
	nim->scl_slope = 1.0, nim->scl_inter = 0.0;
	if (type == FFDP_WRITE_FLOAT32) {
		nim->datatype = DT_FLOAT32;
		nim->data = v->data;
		return FFDP_OK;
	}
	scan_result r = scan(v->data, n);
	if (r.nonfinite)
		return ffdp_fail(err, FFDP_ERR_DATA, "cannot write %s: %lld voxels are NaN or infinite, which an integer "
				 "type cannot hold (write float32)", path, (long long)r.nonfinite);
	float slope, inter;
	size_t bytes;
	switch (type) {
	case FFDP_WRITE_INT16:
		nim->datatype = DT_INT16, bytes = 2;
		choose_scaling(&r, -32768.0, 32767.0, r.integral && r.min >= -32768 && r.max <= 32767, &slope, &inter);
		break;
	case FFDP_WRITE_UINT8:
		nim->datatype = DT_UINT8, bytes = 1;
		choose_scaling(&r, 0.0, 255.0, r.integral && r.min >= 0 && r.max <= 255, &slope, &inter);
		break;
	case FFDP_WRITE_LABEL16:
		slope = 1.0f, inter = 0.0f;
		if (r.min >= -32768.5 && r.max < 32767.5)
			nim->datatype = DT_INT16, bytes = 2;
		else if (r.min >= -2147483648.5 && r.max < 2147483647.5)
			nim->datatype = DT_INT32, bytes = 4;
		else
			return ffdp_fail(err, FFDP_ERR_DATA, "cannot write %s: label values %g .. %g do not fit in int32",
					 path, r.min, r.max);
		break;
	default:
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: unknown storage type %d", path, (int)type);
	}
	*owned = malloc((size_t)n * bytes);
	if (!*owned)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory for the converted data", path);
	if (type == FFDP_WRITE_INT16)
		quantise_i16(v->data, *owned, n, slope, inter);
	else if (type == FFDP_WRITE_UINT8)
		quantise_u8(v->data, *owned, n, slope, inter);
	else if (nim->datatype == DT_INT16)
		round_labels_i16(v->data, *owned, n);
	else
		round_labels_i32(v->data, *owned, n);
	nim->scl_slope = slope, nim->scl_inter = inter;
	nim->data = *owned;
	return FFDP_OK;
}

ffdp_status ffdp_image_write(const char *path, const ffdp_volume *v, ffdp_write_type type, ffdp_error *err)
{
	if (!path || !*path)
		return ffdp_fail(err, FFDP_ERR_ARG, "output image path is empty");
	if (!ffdp_nifti_write_name_ok(path))
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: unknown extension (want .nii or .nii.gz)", path);
	if (!v || !v->data)
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: the volume has no data", path);
	ffdp_error ge = {0};
	if (ffdp_grid_check(&v->grid, &ge))
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: %s", path, ge.msg);
	const ffdp_grid *g = &v->grid;
	int64_t dims[8] = {g->n[2] == 1 ? 2 : 3, g->n[0], g->n[1], g->n[2], 1, 1, 1, 1};
	nifti_image *nim = nifti_make_new_nim(dims, DT_FLOAT32, 0);
	if (!nim)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory", path);
	void *owned = NULL;
	ffdp_status s = encode(v, type, path, nim, &owned, err);
	if (s == FFDP_OK) {
		nifti_datatype_sizes(nim->datatype, &nim->nbyper, NULL);
		ffdp_nifti_set_geometry(nim, g);
		snprintf(nim->descrip, sizeof(nim->descrip), "ffdp");
		s = ffdp_nifti_write_verified(nim, NULL, path, err);
	}
	nim->data = NULL; /* borrowed or owned below, never nifti's */
	nifti_image_free(nim);
	free(owned);
	return s;
}

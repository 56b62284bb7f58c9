/* Writing NIfTI-1 images (NIfTI-2 when a dimension exceeds 32767).
 *
 * nifti_clib builds the header (nifti_convert_nim2n[12]hdr: quaternion,
 * sform, units, magic); the bytes are written here through byte sinks so
 * that every write is checked (nifti_image_write returns nothing, and this
 * library version writes NIfTI-2 single files with a broken header), .gz
 * output is deflated in parallel, and integer encodings are converted chunk
 * by chunk instead of in a second full-size buffer.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ffdp/io.h"
#include "io/atomic_file.h"
#include "io/nifti_internal.h"
#include "io/nifti_pieces.h"

enum { CHUNK_VALUES = 1 << 20 };

int ffdp_nifti_write_name_ok(const char *path)
{
	const char *ext = ffdp_path_extension(path);
	return strcmp(ext, ".nii") == 0 || strcmp(ext, ".nii.gz") == 0;
}

/* ---- choosing the stored representation ---- */

void ffdp_value_range_scan(const float *x, int64_t n, ffdp_value_range *r)
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
	r->min = lo, r->max = hi, r->nonfinite = bad, r->fractional = frac;
}

/* Scaled integer storage: q = round((x - inter) / slope), x ~ q*slope + inter.
 * slope and inter are floats, as NIfTI-1 stores them, and the range keeps a
 * step of margin at each end, so rounding them never clips a value.  Whole
 * numbers that fit are stored unscaled (exact). */
static void choose_scaling(const ffdp_value_range *r, double qlo, double qhi, float *slope, float *inter)
{
	double lo = r->min <= r->max ? r->min : 0.0, hi = r->min <= r->max ? r->max : 0.0;
	if (r->fractional == 0 && lo >= qlo && hi <= qhi) {
		*slope = 1.0f, *inter = 0.0f;
		return;
	}
	double span = hi - lo;
	*slope = span > 0 ? (float)(span / (qhi - qlo - 2.0)) : 1.0f;
	if (!(*slope > 0.0f) || !isfinite(*slope))
		*slope = 1.0f;
	*inter = (float)(qlo >= 0 ? lo - *slope : 0.5 * (lo + hi));
}

static ffdp_status choose_encoding(ffdp_write_type type, const ffdp_value_range *r, const char *path,
				   ffdp_nifti_layout *L, ffdp_error *err)
{
	L->slope = 1.0f, L->inter = 0.0f, L->labels = 0;
	if (type == FFDP_WRITE_FLOAT32) {
		L->datatype = DT_FLOAT32;
		return FFDP_OK;
	}
	if (type != FFDP_WRITE_INT16 && type != FFDP_WRITE_UINT8 && type != FFDP_WRITE_LABEL16)
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: unknown storage type %d", path, (int)type);
	if (!r)
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: an integer type needs the value range",
				 path);
	if (r->nonfinite)
		return ffdp_fail(err, FFDP_ERR_DATA,
				 "cannot write %s: %lld voxels are NaN or infinite, which an integer "
				 "type cannot hold (write float32)",
				 path, (long long)r->nonfinite);
	double lo = r->min <= r->max ? r->min : 0.0, hi = r->min <= r->max ? r->max : 0.0;
	if (type == FFDP_WRITE_INT16) {
		L->datatype = DT_INT16;
		choose_scaling(r, -32768.0, 32767.0, &L->slope, &L->inter);
	} else if (type == FFDP_WRITE_UINT8) {
		L->datatype = DT_UINT8;
		choose_scaling(r, 0.0, 255.0, &L->slope, &L->inter);
	} else {
		L->labels = 1;
		if (lo >= -32768.5 && hi < 32767.5)
			L->datatype = DT_INT16;
		else if (lo >= -2147483648.5 && hi < 2147483647.5)
			L->datatype = DT_INT32;
		else
			return ffdp_fail(err, FFDP_ERR_DATA,
					 "cannot write %s: label values %g .. %g do not fit in int32", path, lo, hi);
	}
	return FFDP_OK;
}

/* ---- header ---- */

static int needs_nifti2(const nifti_image *nim)
{
	for (int i = 1; i <= nim->dim[0]; i++)
		if (nim->dim[i] > 32767)
			return 1;
	return 0;
}

/* Header bytes, then the 4-byte extension flag (no extensions, left 0);
 * data follow at vox_offset = 352 (NIfTI-1) or 544 (NIfTI-2). */
static int header_bytes(nifti_image *nim, ffdp_nifti_layout *L)
{
	int v2 = needs_nifti2(nim), bad;
	memset(L->header, 0, sizeof(L->header));
	nim->nifti_type = v2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
	nim->iname_offset = v2 ? 544 : 352;
	L->header_bytes = (int)nim->iname_offset;
	/* The converters leave vox_offset 0, and the NIfTI-2 one omits the magic's
	 * "\r\n\032\n" tail: set both as the format defines them. */
	if (v2) {
		nifti_2_header h;
		bad = nifti_convert_nim2n2hdr(nim, &h);
		h.vox_offset = nim->iname_offset;
		memcpy(h.magic, "n+2\0\r\n\032\n", 8);
		memcpy(L->header, &h, sizeof(h));
	} else {
		nifti_1_header h;
		bad = nifti_convert_nim2n1hdr(nim, &h);
		h.vox_offset = (float)nim->iname_offset;
		memcpy(h.magic, "n+1", 4);
		memcpy(L->header, &h, sizeof(h));
	}
	return bad;
}

ffdp_status ffdp_nifti_layout_make(const char *path, const ffdp_grid *g, int ncomp, ffdp_write_type type,
				   const ffdp_value_range *range, ffdp_nifti_layout *L, ffdp_error *err)
{
	memset(L, 0, sizeof(*L));
	if (!path || !*path)
		return ffdp_fail(err, FFDP_ERR_ARG, "output image path is empty");
	if (!ffdp_nifti_write_name_ok(path))
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: unknown extension (want .nii or .nii.gz)",
				 path);
	ffdp_error ge = {0};
	if (!g || ffdp_grid_check(g, &ge))
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: %s", path, g ? ge.msg : "no grid");
	int field = ncomp != 1;
	if (field && ncomp != ffdp_grid_dim(g))
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: %d components on a %d-D grid", path, ncomp,
				 ffdp_grid_dim(g));
	if (field && type != FFDP_WRITE_FLOAT32)
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: a displacement field is float32", path);
	ffdp_status s = choose_encoding(type, range, path, L, err);
	if (s)
		return s;
	int64_t dims[8] = {g->n[2] == 1 ? 2 : 3, g->n[0], g->n[1], g->n[2], 1, 1, 1, 1};
	if (field)
		dims[0] = 5, dims[5] = ncomp;
	memcpy(L->dims, dims, sizeof(dims));
	L->ncomp = ncomp, L->nz = g->n[2], L->plane = g->n[0] * g->n[1];
	L->gz = strcmp(ffdp_path_extension(path), ".nii.gz") == 0;
	nifti_image *nim = nifti_make_new_nim(dims, L->datatype, 0);
	if (!nim)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory", path);
	ffdp_nifti_set_geometry(nim, g);
	nim->scl_slope = L->slope, nim->scl_inter = L->inter;
	if (field)
		nim->intent_code = NIFTI_INTENT_VECTOR;
	snprintf(nim->descrip, sizeof(nim->descrip), field ? "ffdp displacement (LPS mm)" : "ffdp");
	L->nbyper = nim->nbyper;
	int bad = header_bytes(nim, L);
	nifti_image_free(nim);
	if (bad)
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: the header cannot be built", path);
	return FFDP_OK;
}

ffdp_status ffdp_nifti_header_write(const ffdp_nifti_layout *L, int fd, const char *path, int64_t *end,
				    ffdp_error *err)
{
	ffdp_sink s;
	ffdp_status st = ffdp_sink_open(&s, fd, 0, L->gz, path, err);
	if (st == FFDP_OK)
		st = ffdp_sink_write(&s, L->header, (size_t)L->header_bytes, err);
	if (st == FFDP_OK)
		st = ffdp_sink_flush(&s, err);
	*end = s.pos;
	ffdp_sink_free(&s);
	return st;
}

/* ---- data ---- */

ffdp_status ffdp_nifti_data_sink_open(const ffdp_nifti_layout *L, ffdp_sink *s, int fd, int64_t pos, const char *path,
				      ffdp_error *err)
{
	ffdp_status st = ffdp_sink_open(s, fd, pos, L->gz, path, err);
	/* LZ77 matches are rare in float bits; runs (zeros) are what there is. */
	if (st == FFDP_OK && L->datatype == DT_FLOAT32)
		s->strategy = Z_RLE;
	return st;
}

static void encode_chunk(const ffdp_nifti_layout *L, const float *x, int64_t n, void *out)
{
	const double slope = L->slope, inter = L->inter;
	if (L->datatype == DT_INT32) {
		int32_t *q = out;
#pragma omp parallel for
		for (int64_t i = 0; i < n; i++)
			q[i] = (int32_t)lround(x[i]);
	} else if (L->datatype == DT_INT16 && L->labels) {
		int16_t *q = out;
#pragma omp parallel for
		for (int64_t i = 0; i < n; i++)
			q[i] = (int16_t)lround(x[i]);
	} else if (L->datatype == DT_INT16) {
		int16_t *q = out;
#pragma omp parallel for
		for (int64_t i = 0; i < n; i++) {
			double v = nearbyint(((double)x[i] - inter) / slope);
			q[i] = (int16_t)(v < -32768.0 ? -32768.0 : v > 32767.0 ? 32767.0 : v);
		}
	} else if (L->datatype == DT_UINT8) {
		uint8_t *q = out;
#pragma omp parallel for
		for (int64_t i = 0; i < n; i++) {
			double v = nearbyint(((double)x[i] - inter) / slope);
			q[i] = (uint8_t)(v < 0.0 ? 0.0 : v > 255.0 ? 255.0 : v);
		}
	}
}

ffdp_status ffdp_nifti_encode_write(const ffdp_nifti_layout *L, ffdp_sink *s, const float *x, int64_t n,
				    ffdp_error *err)
{
	if (L->datatype == DT_FLOAT32)
		return ffdp_sink_write(s, x, (size_t)n * sizeof(float), err);
	void *buf = malloc((size_t)CHUNK_VALUES * (size_t)L->nbyper);
	if (!buf)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory for a write buffer",
				 s->name);
	ffdp_status st = FFDP_OK;
	for (int64_t off = 0; off < n && st == FFDP_OK; off += CHUNK_VALUES) {
		int64_t k = n - off < CHUNK_VALUES ? n - off : CHUNK_VALUES;
		encode_chunk(L, x + off, k, buf);
		st = ffdp_sink_write(s, buf, (size_t)k * (size_t)L->nbyper, err);
	}
	free(buf);
	return st;
}

ffdp_status ffdp_nifti_verify_written(const ffdp_nifti_layout *L, const char *tmp, int64_t size,
				      const char *path, ffdp_error *err)
{
	struct stat st;
	if (stat(tmp, &st) != 0 || st.st_size == 0)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: nothing was written", path);
	nifti_set_debug_level(0);
	nifti_image *back = nifti_image_read(tmp, 0);
	if (!back)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: the written header does not read back",
				 path);
	int same = back->datatype == L->datatype && back->dim[0] == L->dims[0];
	for (int i = 1; same && i <= L->dims[0]; i++)
		same = back->dim[i] == L->dims[i];
	nifti_image_free(back);
	if (!same)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: the written header does not match", path);
	if ((int64_t)st.st_size != size)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: the file came out incomplete (%lld of %lld bytes)",
				 path, (long long)st.st_size, (long long)size);
	return FFDP_OK;
}

ffdp_status ffdp_nifti_begin(const ffdp_nifti_layout *L, const char *path, ffdp_atomic_file *a, int64_t *head_end,
			     ffdp_error *err)
{
	ffdp_status s = ffdp_atomic_begin(a, path, err);
	if (s)
		return s;
	int fd = open(a->tmp, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		s = ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
	else
		s = ffdp_nifti_header_write(L, fd, path, head_end, err);
	if (fd >= 0 && close(fd) != 0 && s == FFDP_OK)
		s = ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
	if (s)
		ffdp_atomic_abort(a);
	return s;
}

/* The data of every component through one sink into fd from head_end;
 * *size: the file's length. */
static ffdp_status write_data(const ffdp_nifti_layout *L, const float *const planes[3], int fd, int64_t head_end,
			      const char *path, int64_t *size, ffdp_error *err)
{
	int64_t n = L->nz * L->plane;
	ffdp_sink s = {0};
	ffdp_status st = ffdp_nifti_data_sink_open(L, &s, fd, head_end, path, err);
	for (int c = 0; c < L->ncomp && st == FFDP_OK; c++)
		st = ffdp_nifti_encode_write(L, &s, planes[c], n, err);
	if (st == FFDP_OK)
		st = ffdp_sink_flush(&s, err);
	*size = s.pos;
	ffdp_sink_free(&s);
	return st;
}

ffdp_status ffdp_nifti_write_whole(const ffdp_nifti_layout *L, const float *const planes[3], const char *path,
				   ffdp_error *err)
{
	ffdp_atomic_file a;
	int64_t head_end = 0, size = 0;
	ffdp_status s = ffdp_nifti_begin(L, path, &a, &head_end, err);
	if (s)
		return s;
	int fd = open(a.tmp, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		s = ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
	else
		s = write_data(L, planes, fd, head_end, path, &size, err);
	if (fd >= 0 && close(fd) != 0 && s == FFDP_OK)
		s = ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
	if (s == FFDP_OK)
		s = ffdp_nifti_verify_written(L, a.tmp, size, path, err);
	if (s) {
		ffdp_atomic_abort(&a);
		return s;
	}
	return ffdp_atomic_commit(&a, err);
}

ffdp_status ffdp_image_write(const char *path, const ffdp_volume *v, ffdp_write_type type, ffdp_error *err)
{
	if (!path || !*path)
		return ffdp_fail(err, FFDP_ERR_ARG, "output image path is empty");
	if (!v || !v->data)
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: the volume has no data", path);
	ffdp_value_range r, *rp = NULL;
	ffdp_error ge = {0};
	if (ffdp_grid_check(&v->grid, &ge))
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: %s", path, ge.msg);
	if (type != FFDP_WRITE_FLOAT32) {
		ffdp_value_range_scan(v->data, ffdp_grid_voxels(&v->grid), &r);
		rp = &r;
	}
	ffdp_nifti_layout L;
	ffdp_status s = ffdp_nifti_layout_make(path, &v->grid, 1, type, rp, &L, err);
	if (s)
		return s;
	const float *planes[3] = {v->data, NULL, NULL};
	return ffdp_nifti_write_whole(&L, planes, path, err);
}

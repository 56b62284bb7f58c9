/* Writing NIfTI-1 images (NIfTI-2 when a dimension exceeds 32767).
 *
 * nifti_clib builds the header (nifti_convert_nim2n[12]hdr: quaternion,
 * sform, units, magic); the bytes are written here with stdio or zlib so
 * that every write is checked (nifti_image_write returns nothing, and this
 * library version writes NIfTI-2 single files with a broken header), and
 * integer encodings are converted chunk by chunk instead of in a second
 * full-size buffer.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ffdp/io.h"
#include "io/atomic_file.h"
#include "io/nifti_internal.h"

enum { CHUNK_VALUES = 1 << 20 };

int ffdp_nifti_write_name_ok(const char *path)
{
	const char *ext = ffdp_path_extension(path);
	return strcmp(ext, ".nii") == 0 || strcmp(ext, ".nii.gz") == 0;
}

/* ---- output stream: plain or gzip ---- */

typedef struct out_file {
	FILE *f;
	gzFile gz;
} out_file;

static int out_open(out_file *o, const char *tmp, int gz)
{
	memset(o, 0, sizeof(*o));
	if (gz) {
		/* Level 1: 4-6x faster than zlib's default 6 on brain volumes for
		 * 10-15% larger files; outputs here can be gigavoxels. */
		o->gz = gzopen(tmp, "wb1");
		return o->gz && gzbuffer(o->gz, 1 << 20) == 0 ? 0 : -1;
	}
	o->f = fopen(tmp, "wb");
	return o->f && setvbuf(o->f, NULL, _IOFBF, 1 << 20) == 0 ? 0 : -1;
}

static int out_write(out_file *o, const void *p, size_t n)
{
	const char *c = p;
	if (o->f)
		return fwrite(p, 1, n, o->f) == n ? 0 : -1;
	while (n > 0) {
		unsigned k = n > (1u << 30) ? 1u << 30 : (unsigned)n;
		if (gzwrite(o->gz, c, k) != (int)k)
			return -1;
		c += k, n -= k;
	}
	return 0;
}

/* Closes in every case; -1 if anything failed, including the final flush. */
static int out_close(out_file *o)
{
	int rc = 0;
	if (o->f)
		rc = fclose(o->f) == 0 ? 0 : -1;
	if (o->gz)
		rc = gzclose(o->gz) == Z_OK ? 0 : -1;
	o->f = NULL, o->gz = NULL;
	return rc;
}

/* ---- header ---- */

static int needs_nifti2(const nifti_image *nim)
{
	for (int i = 1; i <= nim->dim[0]; i++)
		if (nim->dim[i] > 32767)
			return 1;
	return 0;
}

/* Header bytes, then the 4-byte extension flag (no extensions); data follow
 * at vox_offset = 352 (NIfTI-1) or 544 (NIfTI-2). */
static ffdp_status write_header(out_file *o, nifti_image *nim, const char *path, ffdp_error *err)
{
	static const unsigned char no_ext[4] = {0, 0, 0, 0};
	int v2 = needs_nifti2(nim), bad;
	nim->nifti_type = v2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
	nim->iname_offset = v2 ? 544 : 352;
	/* The converters leave vox_offset 0, and the NIfTI-2 one omits the magic's
	 * "\r\n\032\n" tail: set both as the format defines them. */
	if (v2) {
		nifti_2_header h;
		bad = nifti_convert_nim2n2hdr(nim, &h);
		h.vox_offset = nim->iname_offset;
		memcpy(h.magic, "n+2\0\r\n\032\n", 8);
		bad = bad || out_write(o, &h, sizeof(h));
	} else {
		nifti_1_header h;
		bad = nifti_convert_nim2n1hdr(nim, &h);
		h.vox_offset = (float)nim->iname_offset;
		memcpy(h.magic, "n+1", 4);
		bad = bad || out_write(o, &h, sizeof(h));
	}
	if (bad || out_write(o, no_ext, sizeof(no_ext)))
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: writing the header failed: %s", path,
				 errno ? strerror(errno) : "header conversion failed");
	return FFDP_OK;
}

/* ---- data ---- */

static void encode_chunk(const ffdp_nifti_payload *pl, const float *x, int64_t n, void *out)
{
	const double slope = pl->slope, inter = pl->inter;
	if (pl->datatype == DT_INT32) {
		int32_t *q = out;
#pragma omp parallel for
		for (int64_t i = 0; i < n; i++)
			q[i] = (int32_t)lround(x[i]);
	} else if (pl->datatype == DT_INT16 && pl->labels) {
		int16_t *q = out;
#pragma omp parallel for
		for (int64_t i = 0; i < n; i++)
			q[i] = (int16_t)lround(x[i]);
	} else if (pl->datatype == DT_INT16) {
		int16_t *q = out;
#pragma omp parallel for
		for (int64_t i = 0; i < n; i++) {
			double v = nearbyint(((double)x[i] - inter) / slope);
			q[i] = (int16_t)(v < -32768.0 ? -32768.0 : v > 32767.0 ? 32767.0 : v);
		}
	} else if (pl->datatype == DT_UINT8) {
		uint8_t *q = out;
#pragma omp parallel for
		for (int64_t i = 0; i < n; i++) {
			double v = nearbyint(((double)x[i] - inter) / slope);
			q[i] = (uint8_t)(v < 0.0 ? 0.0 : v > 255.0 ? 255.0 : v);
		}
	}
}

static ffdp_status write_payload(out_file *o, const ffdp_nifti_payload *pl, int nbyper, const char *path,
				 ffdp_error *err)
{
	void *buf = NULL;
	int direct = pl->datatype == DT_FLOAT32;
	if (!direct && !(buf = malloc((size_t)CHUNK_VALUES * (size_t)nbyper)))
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory for a write buffer",
				 path);
	int bad = 0;
	for (int p = 0; p < pl->nplanes && !bad; p++)
		for (int64_t off = 0; off < pl->plane_values && !bad; off += CHUNK_VALUES) {
			int64_t k =
			    pl->plane_values - off < CHUNK_VALUES ? pl->plane_values - off : CHUNK_VALUES;
			const float *x = pl->planes[p] + off;
			if (!direct)
				encode_chunk(pl, x, k, buf);
			bad = out_write(o, direct ? (const void *)x : buf, (size_t)k * (size_t)nbyper);
		}
	free(buf);
	if (bad)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s", path,
				 errno ? strerror(errno) : "write failed");
	return FFDP_OK;
}

/* gzip keeps the uncompressed length mod 2^32 in its last four bytes. */
static int gzip_length_matches(const char *tmp, int64_t expect)
{
	unsigned char head[2], tail[4];
	FILE *f = fopen(tmp, "rb");
	if (!f)
		return 0;
	int ok = fread(head, 1, 2, f) == 2 && head[0] == 0x1f && head[1] == 0x8b &&
		 fseek(f, -4, SEEK_END) == 0 && fread(tail, 1, 4, f) == 4;
	fclose(f);
	uint32_t isize =
	    (uint32_t)tail[0] | (uint32_t)tail[1] << 8 | (uint32_t)tail[2] << 16 | (uint32_t)tail[3] << 24;
	return ok && isize == (uint32_t)((uint64_t)expect & 0xffffffffu);
}

/* Belt and braces after the checked writes: the temporary's header reads
 * back with the same dims and type, and its length is what it must be. */
static ffdp_status verify_written(const nifti_image *nim, const char *tmp, int gz, const char *path,
				  ffdp_error *err)
{
	struct stat st;
	if (stat(tmp, &st) != 0 || st.st_size == 0)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: nothing was written", path);
	nifti_image *back = nifti_image_read(tmp, 0);
	if (!back)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: the written header does not read back",
				 path);
	int same = back->datatype == nim->datatype && back->dim[0] == nim->dim[0];
	for (int i = 1; same && i <= nim->dim[0]; i++)
		same = back->dim[i] == nim->dim[i];
	nifti_image_free(back);
	if (!same)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: the written header does not match",
				 path);
	int64_t expect = nim->iname_offset + nim->nvox * (int64_t)nim->nbyper;
	if (gz ? !gzip_length_matches(tmp, expect) : (int64_t)st.st_size != expect)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: the file came out incomplete", path);
	return FFDP_OK;
}

ffdp_status ffdp_nifti_write_verified(nifti_image *nim, const ffdp_nifti_payload *pl, const char *path,
				      ffdp_error *err)
{
	if ((int64_t)pl->nplanes * pl->plane_values != nim->nvox || pl->datatype != nim->datatype)
		return ffdp_fail(err, FFDP_ERR_ARG, "internal: payload does not match the header of %s",
				 path);
	ffdp_atomic_file a;
	ffdp_status s = ffdp_atomic_begin(&a, path, err);
	if (s)
		return s;
	int gz = strcmp(ffdp_path_extension(path), ".nii.gz") == 0;
	out_file o;
	errno = 0;
	if (out_open(&o, a.tmp, gz)) {
		s = ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s", path,
			      errno ? strerror(errno) : "open failed");
		out_close(&o);
		ffdp_atomic_abort(&a);
		return s;
	}
	s = write_header(&o, nim, path, err);
	if (s == FFDP_OK)
		s = write_payload(&o, pl, nim->nbyper, path, err);
	errno = 0;
	if (out_close(&o) && s == FFDP_OK)
		s = ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s", path,
			      errno ? strerror(errno) : "close failed");
	if (s == FFDP_OK) {
		nifti_set_debug_level(0);
		s = verify_written(nim, a.tmp, gz, path, err);
	}
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
	if (lo > hi)
		r.min = r.max = 0.0;
	return r;
}

/* Scaled integer storage: q = round((x - inter) / slope), x ~ q*slope + inter.
 * slope and inter are floats, as NIfTI-1 stores them, and the range keeps a
 * step of margin at each end, so rounding them never clips a value.  Whole
 * numbers that fit are stored unscaled (exact). */
static void choose_scaling(const scan_result *r, double qlo, double qhi, float *slope, float *inter)
{
	if (r->integral && r->min >= qlo && r->max <= qhi) {
		*slope = 1.0f, *inter = 0.0f;
		return;
	}
	double span = r->max - r->min;
	*slope = span > 0 ? (float)(span / (qhi - qlo - 2.0)) : 1.0f;
	if (!(*slope > 0.0f) || !isfinite(*slope))
		*slope = 1.0f;
	*inter = (float)(qlo >= 0 ? r->min - *slope : 0.5 * (r->min + r->max));
}

static ffdp_status choose_representation(const ffdp_volume *v, ffdp_write_type type, const char *path,
					 ffdp_nifti_payload *pl, ffdp_error *err)
{
	memset(pl, 0, sizeof(*pl));
	pl->planes[0] = v->data;
	pl->nplanes = 1;
	pl->plane_values = ffdp_grid_voxels(&v->grid);
	pl->slope = 1.0f;
	if (type == FFDP_WRITE_FLOAT32) {
		pl->datatype = DT_FLOAT32;
		return FFDP_OK;
	}
	if (type != FFDP_WRITE_INT16 && type != FFDP_WRITE_UINT8 && type != FFDP_WRITE_LABEL16)
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: unknown storage type %d", path,
				 (int)type);
	scan_result r = scan(v->data, pl->plane_values);
	if (r.nonfinite)
		return ffdp_fail(err, FFDP_ERR_DATA,
				 "cannot write %s: %lld voxels are NaN or infinite, which an integer "
				 "type cannot hold (write float32)",
				 path, (long long)r.nonfinite);
	if (type == FFDP_WRITE_INT16) {
		pl->datatype = DT_INT16;
		choose_scaling(&r, -32768.0, 32767.0, &pl->slope, &pl->inter);
	} else if (type == FFDP_WRITE_UINT8) {
		pl->datatype = DT_UINT8;
		choose_scaling(&r, 0.0, 255.0, &pl->slope, &pl->inter);
	} else {
		pl->labels = 1;
		if (r.min >= -32768.5 && r.max < 32767.5)
			pl->datatype = DT_INT16;
		else if (r.min >= -2147483648.5 && r.max < 2147483647.5)
			pl->datatype = DT_INT32;
		else
			return ffdp_fail(err, FFDP_ERR_DATA,
					 "cannot write %s: label values %g .. %g do not fit in int32", path,
					 r.min, r.max);
	}
	return FFDP_OK;
}

ffdp_status ffdp_image_write(const char *path, const ffdp_volume *v, ffdp_write_type type, ffdp_error *err)
{
	if (!path || !*path)
		return ffdp_fail(err, FFDP_ERR_ARG, "output image path is empty");
	if (!ffdp_nifti_write_name_ok(path))
		return ffdp_fail(err, FFDP_ERR_ARG,
				 "cannot write %s: unknown extension (want .nii or .nii.gz)", path);
	if (!v || !v->data)
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: the volume has no data", path);
	ffdp_error ge = {0};
	if (ffdp_grid_check(&v->grid, &ge))
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: %s", path, ge.msg);
	ffdp_nifti_payload pl;
	ffdp_status s = choose_representation(v, type, path, &pl, err);
	if (s)
		return s;
	const ffdp_grid *g = &v->grid;
	int64_t dims[8] = {g->n[2] == 1 ? 2 : 3, g->n[0], g->n[1], g->n[2], 1, 1, 1, 1};
	nifti_image *nim = nifti_make_new_nim(dims, pl.datatype, 0);
	if (!nim)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory", path);
	ffdp_nifti_set_geometry(nim, g);
	nim->scl_slope = pl.slope, nim->scl_inter = pl.inter;
	snprintf(nim->descrip, sizeof(nim->descrip), "ffdp");
	s = ffdp_nifti_write_verified(nim, &pl, path, err);
	nifti_image_free(nim);
	return s;
}

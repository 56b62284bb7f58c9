/* ITK's MATLAB binary transform files: what antsRegistration writes as
 * PREFIX0GenericAffine.mat, and antsApplyTransforms reads for a .mat name.
 *
 * The container is a MATLAB Level 4 MAT-file: a sequence of matrices, each a
 * 20-byte header of five 32-bit integers (type, mrows, ncols, imagf,
 * namlen), the name (namlen bytes, NUL included), then mrows * ncols values
 * column by column.  type's decimal digits MOPT give the byte order (M: 0
 * little-endian, 1 big-endian), O = 0, the value type (P: 0 double, 1
 * float) and T = 0 for a full numeric matrix.  ITK stores two column
 * vectors: the Parameters under the transform's type name (e.g.
 * "AffineTransform_double_3_3") and the FixedParameters (the centre) under
 * "fixed".  The types and their math are the text form's (itk_params.c).
 *
 * Level 5 MAT-files (a 128-byte text header, "MATLAB 5.0 MAT-file") are
 * what MATLAB itself saves; ITK neither writes nor reads them, so neither
 * does this.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic_file.h"
#include "io/itk_params.h"

enum {
	MAT_MAX_BYTES = 1 << 16, /* a transform file is ~200 bytes */
	MAT_HEADER = 20,
	MAT_MAX_NAME = 128,
};

static uint32_t mat_u32(const unsigned char *b, int big)
{
	return big ? (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]
		   : (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}

/* Value i of a matrix's data (double or float, either byte order). */
static double mat_value(const unsigned char *d, int i, int is_float, int big)
{
	unsigned char b[8];
	const int w = is_float ? 4 : 8;
	for (int k = 0; k < w; k++) /* to little-endian, then to the host's */
		b[k] = d[i * w + (big ? w - 1 - k : k)];
	uint64_t u = 0;
	for (int k = w - 1; k >= 0; k--)
		u = u << 8 | b[k];
	if (is_float) {
		uint32_t u32 = (uint32_t)u;
		float f;
		memcpy(&f, &u32, 4);
		return f;
	}
	double v;
	memcpy(&v, &u, 8);
	return v;
}

/* The whole file, at most MAT_MAX_BYTES. */
static ffdp_status mat_slurp(const char *path, unsigned char *buf, size_t *n, ffdp_error *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return errno == ENOENT ? ffdp_fail(err, FFDP_ERR_IO, "%s: no such file", path)
				       : ffdp_fail(err, FFDP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
	*n = fread(buf, 1, MAT_MAX_BYTES, f);
	int bad = ferror(f), more = !bad && *n == MAT_MAX_BYTES && fgetc(f) != EOF;
	fclose(f);
	if (bad)
		return ffdp_fail(err, FFDP_ERR_IO, "%s: read error", path);
	if (more)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: over %d bytes, not an ITK transform file", path,
				 MAT_MAX_BYTES);
	return FFDP_OK;
}

/* One matrix at buf + *at: its values into t (the parameters or the
 * centre, by name); *at moves past it. */
static ffdp_status mat_one(const char *path, const unsigned char *buf, size_t n, size_t *at, ffdp_itk_params *t,
			   int *ntransforms, ffdp_error *err)
{
	const unsigned char *h = buf + *at;
	if (n - *at < MAT_HEADER)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: truncated (a matrix header at byte %zu is cut short)", path,
				 *at);
	/* the byte order from type: M is 0 or 1, so a type of 0..1999 read in
	 * the wrong order would be >= 2^24 */
	int big = mat_u32(h, 0) > 9999;
	const uint32_t type = mat_u32(h, big), mrows = mat_u32(h + 4, big), ncols = mat_u32(h + 8, big);
	const uint32_t imagf = mat_u32(h + 12, big), namlen = mat_u32(h + 16, big);
	const unsigned M = type / 1000, O = type / 100 % 10, P = type / 10 % 10, T = type % 10;
	if (type > 9999)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: not a MATLAB Level 4 transform file (no matrix header at "
				 "byte %zu)", path, *at);
	if (M != (unsigned)big || O != 0)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: not a MATLAB Level 4 transform file (matrix type %u at "
				 "byte %zu)", path, type, *at);
	if (T != 0 || (P != 0 && P != 1) || imagf != 0)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: matrix at byte %zu has type %u%s; ITK transforms hold "
				 "real doubles or floats", path, *at, type, imagf ? " and an imaginary part" : "");
	if (namlen < 2 || namlen > MAT_MAX_NAME || n - *at - MAT_HEADER < namlen)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: matrix at byte %zu has a name of %u bytes%s", path, *at,
				 namlen, namlen > MAT_MAX_NAME || namlen < 2 ? "" : " past the end of the file");
	const char *name = (const char *)h + MAT_HEADER;
	if (name[namlen - 1] != '\0' || strlen(name) != namlen - 1)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: matrix name at byte %zu is not a string", path,
				 *at + MAT_HEADER);
	const int is_fixed = !strcmp(name, "fixed");
	ffdp_itk_params kind;
	if (!is_fixed && !ffdp_itk_type_parse(name, &kind)) /* before its size: a B-spline's are many */
		return ffdp_itk_type_refused(path, name, err);
	const uint64_t count = (uint64_t)mrows * ncols, w = P ? 4 : 8;
	const size_t data = *at + MAT_HEADER + namlen;
	if (count > 12 || count * w > n - data)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: '%s' holds %llu values%s", path, name,
				 (unsigned long long)count,
				 count > 12 ? ", more than an affine's 12" : ", past the end of the file (truncated)");
	double v[12];
	for (uint64_t i = 0; i < count; i++) {
		v[i] = mat_value(buf + data, (int)i, P == 1, big);
		if (!isfinite(v[i]))
			return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: '%s' value %llu is not a finite number", path, name,
					 (unsigned long long)i + 1);
	}
	*at = data + count * w;
	if (is_fixed) {
		if (count > 4)
			return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: 'fixed' (the centre) holds %llu values, at most 4",
					 path, (unsigned long long)count);
		memcpy(t->c, v, count * sizeof(double));
		t->nc = (int)count;
		return FFDP_OK;
	}
	if (++*ntransforms > 1)
		return ffdp_fail(err, FFDP_ERR_FORMAT,
				 "%s: holds more than one transform ('%s' after '%s'); ffdp reads a single affine",
				 path, name, t->type);
	snprintf(t->type, sizeof(t->type), "%s", name);
	t->kind = kind.kind, t->dim = kind.dim;
	memcpy(t->p, v, count * sizeof(double));
	t->np = (int)count;
	return FFDP_OK;
}

ffdp_status ffdp_itk_mat_read(const char *path, ffdp_itk_params *t, ffdp_error *err)
{
	unsigned char *b = malloc(MAT_MAX_BYTES);
	if (!b)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "%s: cannot allocate the read buffer", path);
	size_t n = 0, at = 0;
	int ntransforms = 0;
	memset(t, 0, sizeof(*t));
	ffdp_status s = mat_slurp(path, b, &n, err);
	if (!s && n == 0)
		s = ffdp_fail(err, FFDP_ERR_FORMAT, "%s: empty file, not an ITK transform", path);
	if (!s && n >= 19 && !memcmp(b, "MATLAB 5.0 MAT-file", 19))
		s = ffdp_fail(err, FFDP_ERR_FORMAT, "%s: a MATLAB Level 5 file; ITK transforms are Level 4 "
				"(save with -v4, or convert with 'ConvertTransformFile 3 %s OUT.txt')", path, path);
	while (!s && at < n)
		s = mat_one(path, b, n, &at, t, &ntransforms, err);
	free(b);
	if (!s && !ntransforms)
		s = ffdp_fail(err, FFDP_ERR_FORMAT, "%s: no transform parameters (only '%s')", path,
			      t->nc ? "fixed" : "nothing");
	return s;
}

/* One matrix of n doubles in the host's byte order. */
static size_t mat_put(unsigned char *o, const char *name, const double *v, uint32_t n, int big)
{
	const uint32_t namlen = (uint32_t)strlen(name) + 1;
	const uint32_t h[5] = {big ? 1000u : 0u, n, 1u, 0u, namlen};
	memcpy(o, h, sizeof(h));
	memcpy(o + MAT_HEADER, name, namlen);
	memcpy(o + MAT_HEADER + namlen, v, n * sizeof(double));
	return MAT_HEADER + namlen + n * sizeof(double);
}

ffdp_status ffdp_itk_mat_write(const char *path, const ffdp_mat4 *T, ffdp_error *err)
{
	const uint32_t one = 1;
	unsigned char first;
	memcpy(&first, &one, 1);
	const int big = first == 0;
	double p[12];
	const double c[3] = {0.0, 0.0, 0.0};
	for (int r = 0; r < 3; r++) {
		for (int k = 0; k < 3; k++)
			p[3 * r + k] = T->m[4 * r + k];
		p[9 + r] = T->m[4 * r + 3];
	}
	unsigned char out[512];
	size_t n = mat_put(out, "AffineTransform_double_3_3", p, 12, big);
	n += mat_put(out + n, "fixed", c, 3, big);
	return ffdp_write_bytes(path, out, n, err);
}

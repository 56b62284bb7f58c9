/* Reading NIfTI-1/2 images (.nii, .nii.gz) into float32 volumes. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ffdp/io.h"
#include "io/atomic_file.h"
#include "io/nifti_internal.h"

enum { SNIFF_BYTES = 540, CHUNK_BYTES = 8 << 20 };

const char *ffdp_nifti_type_name(int dt)
{
	switch (dt) {
	case DT_BINARY: return "binary";
	case DT_UINT8: return "uint8";
	case DT_INT8: return "int8";
	case DT_UINT16: return "uint16";
	case DT_INT16: return "int16";
	case DT_UINT32: return "uint32";
	case DT_INT32: return "int32";
	case DT_UINT64: return "uint64";
	case DT_INT64: return "int64";
	case DT_FLOAT32: return "float32";
	case DT_FLOAT64: return "float64";
	case DT_FLOAT128: return "float128";
	case DT_COMPLEX64: return "complex64";
	case DT_COMPLEX128: return "complex128";
	case DT_COMPLEX256: return "complex256";
	case DT_RGB24: return "rgb24";
	case DT_RGBA32: return "rgba32";
	default: return "unknown";
	}
}

int ffdp_nifti_type_is_real(int dt)
{
	switch (dt) {
	case DT_UINT8:
	case DT_INT8:
	case DT_UINT16:
	case DT_INT16:
	case DT_UINT32:
	case DT_INT32:
	case DT_UINT64:
	case DT_INT64:
	case DT_FLOAT32:
	case DT_FLOAT64: return 1;
	default: return 0;
	}
}

/* zlib's gzerror says "PATH: reason"; our messages name the file already. */
static const char *zlib_reason(gzFile gz, int *zerr)
{
	const char *m = gzerror(gz, zerr), *r = m;
	for (const char *p = m ? strstr(m, ": ") : NULL; p; p = strstr(p + 2, ": "))
		r = p + 2;
	return r ? r : "";
}

/* ---- file checks, so that the messages are ours and name the file ---- */

static ffdp_status check_file(const char *path, ffdp_error *err)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return errno == ENOENT ? ffdp_fail(err, FFDP_ERR_IO, "%s: no such file", path)
				       : ffdp_fail(err, FFDP_ERR_IO, "%s: %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return ffdp_fail(err, FFDP_ERR_IO, "%s: is a directory, not an image file", path);
	if (!S_ISREG(st.st_mode))
		return ffdp_fail(err, FFDP_ERR_IO, "%s: not a regular file", path);
	if (st.st_size == 0)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: empty file (0 bytes), not a NIfTI image", path);
	if (access(path, R_OK) != 0)
		return ffdp_fail(err, FFDP_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
	return FFDP_OK;
}

static int32_t get_i32(const unsigned char *p, int swap)
{
	uint32_t v = swap
			 ? (uint32_t)p[3] | (uint32_t)p[2] << 8 | (uint32_t)p[1] << 16 | (uint32_t)p[0] << 24
			 : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	return (int32_t)v;
}

/* By content, not by name: a file's name can lie. */
static int file_is_gzip(const char *path)
{
	unsigned char m[2] = {0, 0};
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	size_t n = fread(m, 1, 2, f);
	fclose(f);
	return n == 2 && m[0] == 0x1f && m[1] == 0x8b;
}

/* Read the first bytes (decompressed) and look for a NIfTI-1 or -2 header. */
static ffdp_status sniff_header(const char *path, int *version, ffdp_error *err)
{
	unsigned char h[SNIFF_BYTES];
	int gzipped = file_is_gzip(path);
	gzFile gz = gzopen(path, "rb");
	if (!gz)
		return ffdp_fail(err, FFDP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
	int n = gzread(gz, h, sizeof(h)), zerr = Z_OK;
	const char *zmsg = zlib_reason(gz, &zerr);
	char zbuf[128];
	snprintf(zbuf, sizeof(zbuf), "%s", zmsg ? zmsg : "");
	gzclose(gz);
	if (n < 0 || zerr == Z_DATA_ERROR)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: corrupt compressed data (%s)", path, zbuf);
	if (n < 348)
		return gzipped ? ffdp_fail(err, FFDP_ERR_FORMAT,
					   "%s: truncated: the compressed file ends inside the header (%d of "
					   "348 bytes)",
					   path, n)
			       : ffdp_fail(err, FFDP_ERR_FORMAT,
					   "%s: not a NIfTI file (%d bytes; a NIfTI header alone is 348)",
					   path, n);
	int32_t sz = get_i32(h, 0), szs = get_i32(h, 1);
	*version = sz == 540 || szs == 540 ? 2 : 1;
	if (sz == 348 || szs == 348) {
		if (memcmp(h + 344, "n+1", 4) && memcmp(h + 344, "ni1", 4) && !strstr(path, ".hdr"))
			return ffdp_fail(err, FFDP_ERR_FORMAT,
					 "%s: not a NIfTI file (Analyze-style header without "
					 "the NIfTI magic \"n+1\")",
					 path);
		return FFDP_OK;
	}
	if (sz == 540 || szs == 540) {
		if (n < 540)
			return ffdp_fail(err, FFDP_ERR_FORMAT,
					 "%s: truncated NIfTI-2 header (%d of 540 bytes)", path, n);
		if (memcmp(h + 4, "n+2", 4) && memcmp(h + 4, "ni2", 4))
			return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: not a NIfTI file (bad NIfTI-2 magic)",
					 path);
		return FFDP_OK;
	}
	return ffdp_fail(err, FFDP_ERR_FORMAT,
			 "%s: not a NIfTI file (header size field is %d, NIfTI wants 348 or 540)", path,
			 (int)sz);
}

static int has_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

ffdp_status ffdp_nifti_open(const char *path, nifti_image **nim, int *version, ffdp_error *err)
{
	int ver = 1;
	*nim = NULL;
	if (!path || !*path)
		return ffdp_fail(err, FFDP_ERR_ARG, "image path is empty");
	ffdp_status s = check_file(path, err);
	if (s)
		return s;
	if (!has_suffix(path, ".nii") && !has_suffix(path, ".nii.gz") && !has_suffix(path, ".hdr") &&
	    !has_suffix(path, ".hdr.gz"))
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: unknown extension (want .nii or .nii.gz)", path);
	s = sniff_header(path, &ver, err);
	if (s)
		return s;
	if (file_is_gzip(path) && !has_suffix(path, ".gz"))
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: is gzip-compressed but not named .gz (rename it to .nii.gz)",
				 path);
	nifti_set_debug_level(0); /* quiet: our messages replace nifti_clib's */
	*nim = nifti_image_read(path, 0);
	if (!*nim)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: invalid NIfTI header (nifti_clib rejects it)",
				 path);
	int bad = (*nim)->dim[0] < 1 || (*nim)->dim[0] > 7 ? 0 : -1;
	for (int i = 1; bad < 0 && i <= (*nim)->dim[0]; i++)
		if ((*nim)->dim[i] < 1)
			bad = i;
	if (bad >= 0) {
		long long d = (long long)(*nim)->dim[bad];
		nifti_image_free(*nim);
		*nim = NULL;
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: invalid NIfTI header (dim[%d] = %lld)", path, bad,
				 d);
	}
	if (version)
		*version = ver;
	return FFDP_OK;
}

int64_t ffdp_nifti_dim(const nifti_image *nim, int i)
{
	return i <= nim->dim[0] ? nim->dim[i] : 1;
}

void ffdp_nifti_fill_info(const nifti_image *nim, int version, ffdp_xform_source src, const ffdp_grid *g,
			  ffdp_image_info *info)
{
	memset(info, 0, sizeof(*info));
	info->nifti_version = version;
	info->datatype = nim->datatype;
	snprintf(info->datatype_name, sizeof(info->datatype_name), "%s", ffdp_nifti_type_name(nim->datatype));
	info->ndim = (int)nim->dim[0];
	for (int i = 0; i < 7; i++) {
		info->dims[i] = ffdp_nifti_dim(nim, i + 1);
		info->pixdim[i] = nim->pixdim[i + 1];
	}
	info->scl_slope = nim->scl_slope;
	info->scl_inter = nim->scl_inter;
	info->qform_code = nim->qform_code;
	info->sform_code = nim->sform_code;
	snprintf(info->geometry_from, sizeof(info->geometry_from), "%s", ffdp_xform_source_name(src));
	ffdp_grid_orientation(g, info->orientation);
	info->intent_code = nim->intent_code;
}

/* ---- voxel data ---- */

void ffdp_value_stats_init(ffdp_value_stats *st)
{
	st->nonfinite = 0;
	st->min = INFINITY;
	st->max = -INFINITY;
}

ffdp_status ffdp_nifti_stream_open(ffdp_nifti_stream *s, const char *path, const nifti_image *nim,
				   ffdp_error *err)
{
	memset(s, 0, sizeof(*s));
	s->path = path;
	s->nim = nim;
	if (!ffdp_nifti_type_is_real(nim->datatype))
		return ffdp_fail(err, FFDP_ERR_FORMAT,
				 "%s: datatype %s is not supported (want a real scalar type: "
				 "uint8 .. int64, float32, float64)",
				 path, ffdp_nifti_type_name(nim->datatype));
	/* nibabel's rule: scale when the slope is finite and non-zero; a NaN intercept counts as 0. */
	if (nim->scl_slope != 0.0 && isfinite(nim->scl_slope)) {
		s->scale = 1;
		s->slope = nim->scl_slope;
		s->inter = isfinite(nim->scl_inter) ? nim->scl_inter : 0.0;
	}
	const char *data = nim->iname ? nim->iname : path;
	int64_t need = nim->iname_offset + nim->nvox * (int64_t)nim->nbyper;
	struct stat st;
	if (stat(data, &st) != 0)
		return ffdp_fail(err, FFDP_ERR_IO, "%s: data file %s: %s", path, data, strerror(errno));
	if (!file_is_gzip(data) && (int64_t)st.st_size < need)
		return ffdp_fail(err, FFDP_ERR_FORMAT,
				 "%s: truncated: the header promises %lld bytes, the file has %lld", path,
				 (long long)need, (long long)st.st_size);
	s->buf = malloc(CHUNK_BYTES);
	if (!s->buf)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "%s: out of memory for a read buffer", path);
	s->gz = gzopen(data, "rb");
	if (!s->gz) {
		ffdp_nifti_stream_close(s);
		return ffdp_fail(err, FFDP_ERR_IO, "%s: cannot open %s: %s", path, data, strerror(errno));
	}
	gzbuffer(s->gz, 1 << 20);
	if (gzseek(s->gz, (z_off_t)nim->iname_offset, SEEK_SET) != (z_off_t)nim->iname_offset) {
		ffdp_nifti_stream_close(s);
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: truncated: the file ends before its voxel data",
				 path);
	}
	return FFDP_OK;
}

void ffdp_nifti_stream_close(ffdp_nifti_stream *s)
{
	if (s->gz)
		gzclose(s->gz);
	free(s->buf);
	s->gz = NULL;
	s->buf = NULL;
}

/* Convert n raw values of type T to float, y = slope*x + inter when scaling. */
/* clang-format off */
#define CONVERT(T)                                                                          \
	do {                                                                                \
		const T *src = (const T *)raw;                                              \
		_Pragma("omp parallel for reduction(+:nonfinite) reduction(min:lo) reduction(max:hi)") \
		for (int64_t i = 0; i < n; i++) {                                           \
			double v = (double)src[i];                                          \
			if (s->scale)                                                       \
				v = s->slope * v + s->inter;                                \
			float f = (float)v;                                                 \
			out[i] = f;                                                         \
			if (!isfinite(f)) {                                                 \
				nonfinite++;                                                \
			} else {                                                            \
				lo = f < lo ? f : lo;                                       \
				hi = f > hi ? f : hi;                                       \
			}                                                                   \
		}                                                                           \
	} while (0)
/* clang-format on */

static void convert_chunk(const ffdp_nifti_stream *s, const void *raw, float *out, int64_t n,
			  ffdp_value_stats *st)
{
	int64_t nonfinite = 0;
	double lo = st->min, hi = st->max;
	switch (s->nim->datatype) {
	case DT_UINT8: CONVERT(uint8_t); break;
	case DT_INT8: CONVERT(int8_t); break;
	case DT_UINT16: CONVERT(uint16_t); break;
	case DT_INT16: CONVERT(int16_t); break;
	case DT_UINT32: CONVERT(uint32_t); break;
	case DT_INT32: CONVERT(int32_t); break;
	case DT_UINT64: CONVERT(uint64_t); break;
	case DT_INT64: CONVERT(int64_t); break;
	case DT_FLOAT32: CONVERT(float); break;
	case DT_FLOAT64: CONVERT(double); break;
	default: break; /* refused in stream_open */
	}
	st->nonfinite += nonfinite;
	st->min = lo;
	st->max = hi;
}

static ffdp_status short_read(ffdp_nifti_stream *s, int64_t got_values, ffdp_error *err)
{
	int zerr = Z_OK;
	const char *zmsg = zlib_reason(s->gz, &zerr);
	if (zerr == Z_DATA_ERROR || zerr == Z_MEM_ERROR)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: corrupt compressed data (%s)", s->path, zmsg);
	if (zerr == Z_ERRNO)
		return ffdp_fail(err, FFDP_ERR_IO, "%s: read error: %s", s->path, strerror(errno));
	return ffdp_fail(err, FFDP_ERR_FORMAT,
			 "%s: truncated: the header promises %lld voxel values, the file holds only %lld",
			 s->path, (long long)s->nim->nvox, (long long)got_values);
}

ffdp_status ffdp_nifti_stream_read(ffdp_nifti_stream *s, float *out, int64_t n, ffdp_value_stats *st,
				   ffdp_error *err)
{
	const int64_t bpv = s->nim->nbyper, per_chunk = CHUNK_BYTES / bpv;
	int nbyper = 0, swapsize = 0;
	nifti_datatype_sizes(s->nim->datatype, &nbyper, &swapsize);
	int swap = swapsize > 1 && s->nim->byteorder != nifti_short_order();
	for (int64_t done = 0; done < n;) {
		int64_t k = n - done < per_chunk ? n - done : per_chunk;
		unsigned want = (unsigned)(k * bpv);
		int got = gzread(s->gz, s->buf, want);
		if (got < 0 || (unsigned)got != want)
			return short_read(s, s->pos + (got > 0 ? got / bpv : 0), err);
		if (swap)
			nifti_swap_Nbytes(k, swapsize, s->buf);
		convert_chunk(s, s->buf, out + done, k, st);
		done += k;
		s->pos += k;
	}
	return FFDP_OK;
}

ffdp_status ffdp_nifti_stream_skip(ffdp_nifti_stream *s, int64_t n, ffdp_error *err)
{
	if (n <= 0)
		return FFDP_OK;
	/* A plain file seeks; for gzip, zlib inflates and discards up to the target
	 * at the next read, which then comes up short if the file ends before it. */
	z_off_t to = (z_off_t)(s->nim->iname_offset + (s->pos + n) * (int64_t)s->nim->nbyper);
	if (gzseek(s->gz, to, SEEK_SET) != to)
		return short_read(s, s->pos, err);
	s->pos += n;
	return FFDP_OK;
}

ffdp_status ffdp_nifti_stream_finish(ffdp_nifti_stream *s, ffdp_error *err)
{
	if (gzdirect(s->gz))
		return FFDP_OK;
	/* Data past what the header describes is allowed: drain it. */
	int got;
	while ((got = gzread(s->gz, s->buf, CHUNK_BYTES)) > 0)
		;
	int zerr = Z_OK;
	const char *zmsg = zlib_reason(s->gz, &zerr);
	if (got < 0 || (zerr != Z_OK && zerr != Z_BUF_ERROR))
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: corrupt compressed data (%s)", s->path, zmsg);
	if (zerr == Z_BUF_ERROR)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: truncated: the compressed stream has no proper end",
				 s->path);
	return FFDP_OK;
}

/* ---- images ---- */

ffdp_status ffdp_nifti_open_grid(const char *path, nifti_image **nim, ffdp_grid *g, ffdp_image_info *info,
				 ffdp_error *err)
{
	ffdp_xform_source src;
	int version = 1;
	ffdp_status s = ffdp_nifti_open(path, nim, &version, err);
	if (s == FFDP_OK)
		s = ffdp_nifti_grid(*nim, path, g, &src, err);
	if (s) {
		nifti_image_free(*nim);
		*nim = NULL;
		return s;
	}
	if (info)
		ffdp_nifti_fill_info(*nim, version, src, g, info);
	return FFDP_OK;
}

ffdp_status ffdp_image_read_header(const char *path, ffdp_grid *grid, ffdp_image_info *info, ffdp_error *err)
{
	nifti_image *nim = NULL;
	ffdp_grid g;
	ffdp_status s = ffdp_nifti_open_grid(path, &nim, &g, info, err);
	if (s)
		return s;
	nifti_image_free(nim);
	if (grid)
		*grid = g;
	return FFDP_OK;
}

ffdp_status ffdp_nifti_check_scalar(const nifti_image *nim, const char *path, ffdp_error *err)
{
	char extra[160] = "";
	static const char *names[4] = {"t", "u", "v", "w"};
	int bad = 0, len = 0;
	for (int i = 4; i <= 7; i++) {
		if (ffdp_nifti_dim(nim, i) <= 1)
			continue;
		bad = i;
		len += snprintf(extra + len, sizeof(extra) - (size_t)len, "%s%s = %lld", len ? ", " : "",
				names[i - 4], (long long)ffdp_nifti_dim(nim, i));
	}
	if (!bad)
		return FFDP_OK;
	return ffdp_fail(err, FFDP_ERR_DATA, "%s: %d-D image (%s) where a 3-D image is required", path, bad,
			 extra);
}

ffdp_status ffdp_image_read(const char *path, unsigned flags, ffdp_volume *out, ffdp_image_info *info,
			    ffdp_error *err)
{
	return ffdp_nifti_read_planes(path, flags, 0, -1, out, info, err);
}

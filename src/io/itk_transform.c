/* ITK text transforms ("#Insight Transform File V1.0"), the format that
 * antsApplyTransforms reads for linear transforms; ffdp_affine_read and
 * ffdp_affine_write hand .mat names to the MATLAB binary form (itk_matlab.c).
 *
 * The parameters' meaning per transform type is itk_params.c's.  We write
 * AffineTransform_double_3_3 with the centre 0, so the stored translation
 * is the offset itself.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ffdp/io.h"
#include "io/atomic_file.h" /* ffdp_path_extension */
#include "io/itk_params.h"

#define MAGIC "#Insight Transform File V1.0"

typedef struct itk_text {
	ffdp_itk_params t;
	int have_type, have_params, ntransforms;
} itk_text;

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Parse up to max numbers; -1 on a bad token or too many values. */
static int parse_numbers(const char *s, double *out, int max, const char *path, long line, ffdp_error *err)
{
	int n = 0;
	while (*s) {
		char *end;
		while (isspace((unsigned char)*s))
			s++;
		if (!*s)
			break;
		errno = 0;
		double v = strtod(s, &end);
		if (end == s || !isfinite(v) || (*end && !isspace((unsigned char)*end))) {
			ffdp_fail(err, FFDP_ERR_FORMAT, "%s: line %ld: '%.40s' is not a finite number", path,
				  line, s);
			return -1;
		}
		if (n == max) {
			ffdp_fail(err, FFDP_ERR_FORMAT, "%s: line %ld: more than %d values", path, line, max);
			return -1;
		}
		out[n++] = v;
		s = end;
	}
	return n;
}

static ffdp_status parse_line(char *line, long lineno, itk_text *x, const char *path, ffdp_error *err)
{
	ffdp_itk_params *t = &x->t;
	char *s = trim(line);
	if (!*s)
		return FFDP_OK;
	if (lineno == 1 && strcmp(s, MAGIC) != 0)
		return ffdp_fail(err, FFDP_ERR_FORMAT,
				 "%s: not an ITK text transform (first line is not \"%s\")", path, MAGIC);
	if (*s == '#')
		return FFDP_OK;
	char *colon = strchr(s, ':');
	if (!colon)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: line %ld: expected 'Key: value'", path, lineno);
	*colon = '\0';
	char *key = trim(s), *val = trim(colon + 1);
	if (!strcmp(key, "Transform")) {
		if (++x->ntransforms > 1)
			return ffdp_fail(err, FFDP_ERR_FORMAT,
					 "%s: holds more than one transform; ffdp reads a single "
					 "affine (split the file)",
					 path);
		snprintf(t->type, sizeof(t->type), "%s", val);
		x->have_type = 1;
		return ffdp_itk_type_parse(val, t) ? FFDP_OK : ffdp_itk_type_refused(path, val, err);
	}
	if (!strcmp(key, "Parameters")) {
		t->np = parse_numbers(val, t->p, 12, path, lineno, err);
		x->have_params = 1;
		return t->np < 0 ? FFDP_ERR_FORMAT : FFDP_OK;
	}
	if (!strcmp(key, "FixedParameters")) {
		t->nc = parse_numbers(val, t->c, 4, path, lineno, err);
		return t->nc < 0 ? FFDP_ERR_FORMAT : FFDP_OK;
	}
	return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: line %ld: unknown key '%s'", path, lineno, key);
}

static ffdp_status to_matrix(const itk_text *x, const char *path, ffdp_mat4 *T, ffdp_error *err)
{
	if (!x->have_type || !x->have_params)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: no %s line", path,
				 x->have_type ? "Parameters" : "Transform");
	return ffdp_itk_params_matrix(&x->t, path, T, err);
}

ffdp_status ffdp_affine_read(const char *path, ffdp_mat4 *T, ffdp_error *err)
{
	if (!path || !*path)
		return ffdp_fail(err, FFDP_ERR_ARG, "transform path is empty");
	if (!strcasecmp(ffdp_path_extension(path), ".mat")) {
		ffdp_itk_params t;
		ffdp_status s = ffdp_itk_mat_read(path, &t, err);
		return s ? s : ffdp_itk_params_matrix(&t, path, T, err);
	}
	FILE *f = fopen(path, "r");
	if (!f)
		return errno == ENOENT
			   ? ffdp_fail(err, FFDP_ERR_IO, "%s: no such file", path)
			   : ffdp_fail(err, FFDP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
	itk_text t;
	memset(&t, 0, sizeof(t));
	char *line = NULL;
	size_t cap = 0;
	long lineno = 0;
	ffdp_status s = FFDP_OK;
	while (s == FFDP_OK && getline(&line, &cap, f) >= 0)
		s = parse_line(line, ++lineno, &t, path, err);
	if (s == FFDP_OK && ferror(f))
		s = ffdp_fail(err, FFDP_ERR_IO, "%s: read error: %s", path, strerror(errno));
	if (s == FFDP_OK && lineno == 0)
		s = ffdp_fail(err, FFDP_ERR_FORMAT, "%s: empty file, not an ITK transform", path);
	free(line);
	fclose(f);
	if (s == FFDP_OK)
		s = to_matrix(&t, path, T, err);
	return s;
}

static ffdp_status check_affine(const ffdp_mat4 *T, const char *path, ffdp_error *err)
{
	for (int i = 0; i < 16; i++)
		if (!isfinite(T->m[i]))
			return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: the matrix is not finite",
					 path);
	if (T->m[12] != 0.0 || T->m[13] != 0.0 || T->m[14] != 0.0 || T->m[15] != 1.0)
		return ffdp_fail(err, FFDP_ERR_ARG,
				 "cannot write %s: last row is not 0 0 0 1 (not an affine)", path);
	return FFDP_OK;
}

ffdp_status ffdp_affine_write(const char *path, const ffdp_mat4 *T, ffdp_error *err)
{
	if (!path || !*path)
		return ffdp_fail(err, FFDP_ERR_ARG, "output transform path is empty");
	/* ITK picks its transform reader by extension: .txt/.tfm are text, .mat is MATLAB binary. */
	const char *ext = ffdp_path_extension(path);
	if (strcasecmp(ext, ".txt") && strcasecmp(ext, ".tfm") && strcasecmp(ext, ".mat"))
		return ffdp_fail(err, FFDP_ERR_ARG,
				 "cannot write %s: an ITK transform needs the extension .txt or .tfm "
				 "(text) or .mat (MATLAB binary)",
				 path);
	ffdp_status s = check_affine(T, path, err);
	if (s)
		return s;
	if (!strcasecmp(ext, ".mat"))
		return ffdp_itk_mat_write(path, T, err);
	const double *m = T->m;
	char text[1024];
	int n = snprintf(text, sizeof(text), MAGIC "\n#Transform 0\nTransform: AffineTransform_double_3_3\nParameters:");
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			n += snprintf(text + n, sizeof(text) - (size_t)n, " %.17g", m[4 * r + c]);
	snprintf(text + n, sizeof(text) - (size_t)n, " %.17g %.17g %.17g\nFixedParameters: 0 0 0\n", m[3], m[7],
		 m[11]);
	return ffdp_write_text(path, text, err);
}

/* ffdp apply: resample an image through transforms given in ANTs order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "ffdp/chain.h"

typedef enum tf_type { TF_AFFINE, TF_FIELD } tf_type;

/* One -t argument: FILE or [FILE,0|1]. */
typedef struct tf_spec {
	char path[4096];
	int invert;
	tf_type type;
} tf_spec;

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

/* File type by extension; a usage message (returns 2) for what we cannot read. */
static int classify(tf_spec *t)
{
	if (ends_with(t->path, ".txt") || ends_with(t->path, ".tfm") || ends_with(t->path, ".mat"))
		t->type = TF_AFFINE;
	else if (ends_with(t->path, ".nii") || ends_with(t->path, ".nii.gz"))
		t->type = TF_FIELD;
	else if (ends_with(t->path, ".h5") || ends_with(t->path, ".hdf5"))
		return ffdp_cli_usage("apply", "%s: HDF5 composite transforms are not supported; pass the affine (.txt) "
					       "and warp (.nii.gz) files separately", t->path);
	else
		return ffdp_cli_usage("apply", "%s: unknown transform type (want .txt/.tfm/.mat for an affine, .nii/.nii.gz "
					       "for a displacement field)", t->path);
	if (t->type == TF_FIELD && t->invert)
		return ffdp_cli_usage("apply", "-t [%s,1]: a displacement field cannot be inverted here; pass the inverse "
					       "warp file (e.g. the ...InverseWarp.nii.gz that registration wrote) instead",
				      t->path);
	return 0;
}

static int parse_transform(const char *arg, tf_spec *t)
{
	memset(t, 0, sizeof(*t));
	size_t n = strlen(arg);
	if (arg[0] != '[') {
		if (n >= sizeof(t->path))
			return ffdp_cli_usage("apply", "transform path too long");
		memcpy(t->path, arg, n + 1);
		return classify(t);
	}
	/* [FILE] or [FILE,0] or [FILE,1]: the flag is after the last comma */
	if (n < 3 || arg[n - 1] != ']')
		return ffdp_cli_usage("apply", "-t '%s': want FILE or [FILE,1]", arg);
	const char *body = arg + 1, *comma = strrchr(arg, ',');
	size_t len = n - 2;
	if (comma) {
		const char *flag = comma + 1;
		while (*flag == ' ')
			flag++;
		if (!strcmp(flag, "1]"))
			t->invert = 1;
		else if (strcmp(flag, "0]"))
			return ffdp_cli_usage("apply", "-t '%s': the flag after the comma must be 0 or 1", arg);
		len = (size_t)(comma - body);
	}
	if (len == 0 || len >= sizeof(t->path))
		return ffdp_cli_usage("apply", "-t '%s': empty or overlong file name", arg);
	memcpy(t->path, body, len);
	t->path[len] = 0;
	return classify(t);
}

static int parse_interp(const char *s, ffdp_interp *out)
{
	if (!strcasecmp(s, "linear"))
		*out = FFDP_INTERP_LINEAR;
	else if (!strcasecmp(s, "nearest") || !strcasecmp(s, "nearestneighbor"))
		*out = FFDP_INTERP_NEAREST;
	else if (!strcasecmp(s, "label") || !strcasecmp(s, "genericlabel"))
		*out = FFDP_INTERP_LABEL;
	else
		return -1;
	return 0;
}

/* Integral values within int16: the output can be a label map. */
static int is_label_image(const ffdp_volume *v)
{
	int64_t n = ffdp_grid_voxels(&v->grid), bad = 0;
	const float *x = v->data;
#pragma omp parallel for schedule(static) reduction(+ : bad)
	for (int64_t i = 0; i < n; i++)
		bad += x[i] != nearbyintf(x[i]) || x[i] < -32768.0f || x[i] > 32767.0f;
	return bad == 0;
}

typedef struct apply_args {
	const char *ref, *in, *out;
	tf_spec *tf;
	int ntf;
	ffdp_interp interp;
} apply_args;

static int parse_args(int argc, char **argv, apply_args *a)
{
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(s, "-q") || !strcmp(s, "--quiet") || !strcmp(s, "-v") || !strcmp(s, "--verbose"))
			continue;
		const char **slot = NULL;
		if (!strcmp(s, "-r") || !strcmp(s, "--reference"))
			slot = &a->ref;
		else if (!strcmp(s, "-i") || !strcmp(s, "--input"))
			slot = &a->in;
		else if (!strcmp(s, "-o") || !strcmp(s, "--output"))
			slot = &a->out;
		if (slot) {
			if (!val)
				return ffdp_cli_usage("apply", "%s needs a file name", s);
			*slot = val, i++;
		} else if (!strcmp(s, "-t") || !strcmp(s, "--transform")) {
			if (!val)
				return ffdp_cli_usage("apply", "%s needs a transform file", s);
			i++;
			if (!strcasecmp(val, "identity"))
				continue;
			int rc = parse_transform(val, &a->tf[a->ntf]);
			if (rc)
				return rc;
			a->ntf++;
		} else if (!strcmp(s, "-n") || !strcmp(s, "--interp")) {
			if (!val || parse_interp(val, &a->interp))
				return ffdp_cli_usage("apply", "%s wants linear, nearest or label", s);
			i++;
		} else {
			return ffdp_cli_usage("apply", "unknown option '%s'", s);
		}
	}
	if (!a->ref || !a->in || !a->out)
		return ffdp_cli_usage("apply", "-r REFERENCE, -i INPUT and -o OUTPUT are required");
	return 0;
}

/* Read every transform; fields are owned by `fields` (one slot per item). */
static ffdp_status load_transforms(const apply_args *a, ffdp_chain_item *items, ffdp_field *fields, ffdp_error *err)
{
	for (int k = 0; k < a->ntf; k++) {
		const tf_spec *t = &a->tf[k];
		ffdp_chain_item *it = &items[k];
		memset(it, 0, sizeof(*it));
		it->invert = t->invert;
		ffdp_status s;
		if (t->type == TF_AFFINE) {
			it->kind = FFDP_CHAIN_AFFINE;
			s = ffdp_affine_read(t->path, &it->A, err);
		} else {
			it->kind = FFDP_CHAIN_FIELD;
			it->w = &fields[k];
			s = ffdp_field_read(t->path, &fields[k], err);
		}
		if (s)
			return s;
	}
	return FFDP_OK;
}

static ffdp_status run_apply(const apply_args *a, ffdp_chain_item *items, ffdp_field *fields, ffdp_error *err)
{
	ffdp_grid ref;
	ffdp_image_info info;
	ffdp_volume in = {0}, out = {0};
	ffdp_backend *be = NULL;
	double t0 = ffdp_now();
	ffdp_status s = ffdp_check_writable(a->out, err);
	if (!s)
		s = ffdp_image_read_header(a->ref, &ref, &info, err);
	if (!s)
		s = load_transforms(a, items, fields, err);
	if (!s)
		s = ffdp_image_read(a->in, 0, &in, NULL, err);
	if (!s)
		s = ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, err);
	if (!s && ffdp_chain_resample(be, &in, &ref, items, a->ntf, a->interp, &out, err)) {
		char msg[FFDP_ERROR_MSG_LEN];
		snprintf(msg, sizeof(msg), "%s", err->msg);
		s = ffdp_fail(err, err->code, "%s on the grid of %s: %s", a->in, a->ref, msg);
	}
	if (!s) {
		int labels = a->interp != FFDP_INTERP_LINEAR && is_label_image(&in);
		s = ffdp_image_write(a->out, &out, labels ? FFDP_WRITE_LABEL16 : FFDP_WRITE_FLOAT32, err);
		if (!s)
			ffdp_log_info("apply: wrote %s (%lldx%lldx%lld, %s) through %d transform%s in %.2f s", a->out,
				      (long long)ref.n[0], (long long)ref.n[1], (long long)ref.n[2],
				      labels ? "int16 labels" : "float32", a->ntf, a->ntf == 1 ? "" : "s",
				      ffdp_now() - t0);
	}
	ffdp_backend_close(be);
	ffdp_volume_free(&in);
	ffdp_volume_free(&out);
	return s;
}

int ffdp_cmd_apply(int argc, char **argv)
{
	apply_args a = {NULL, NULL, NULL, NULL, 0, FFDP_INTERP_LINEAR};
	a.tf = calloc((size_t)argc, sizeof(tf_spec));
	ffdp_chain_item *items = calloc((size_t)argc, sizeof(ffdp_chain_item));
	ffdp_field *fields = calloc((size_t)argc, sizeof(ffdp_field));
	int rc;
	if (!a.tf || !items || !fields) {
		ffdp_log_error("apply: out of memory");
		rc = 1;
	} else if (!(rc = parse_args(argc, argv, &a))) {
		ffdp_error err = {0};
		if (run_apply(&a, items, fields, &err))
			rc = ffdp_cli_fail(&err);
	}
	for (int k = 0; fields && k < argc; k++)
		ffdp_field_free(&fields[k]);
	free(fields);
	free(items);
	free(a.tf);
	return rc;
}

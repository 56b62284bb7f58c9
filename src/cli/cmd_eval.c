/* ffdp eval: label overlap, surface distance, warp folding, similarity. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ffdp/eval.h"

typedef struct eval_args {
	const char *labels_fixed, *labels_moved, *warp, *fixed, *moved, *json, *jacobian;
	int window;
} eval_args;

typedef struct eval_results {
	ffdp_label_eval lab;
	int have_labels;
	ffdp_jacobian_stats jac;
	int have_jac;
	double ncc, lncc2;
	int have_sim;
} eval_results;

static int parse_args(int argc, char **argv, eval_args *a)
{
	static const struct {
		const char *name;
		size_t off;
	} files[] = {
		{"--labels-fixed", offsetof(eval_args, labels_fixed)}, {"--labels-moved", offsetof(eval_args, labels_moved)},
		{"--warp", offsetof(eval_args, warp)},                 {"--fixed-image", offsetof(eval_args, fixed)},
		{"--moved-image", offsetof(eval_args, moved)},         {"--json", offsetof(eval_args, json)},
		{"--jacobian", offsetof(eval_args, jacobian)},
	};
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(s, "-q") || !strcmp(s, "--quiet") || !strcmp(s, "-v") || !strcmp(s, "--verbose"))
			continue;
		size_t k = 0, nf = sizeof(files) / sizeof(files[0]);
		while (k < nf && strcmp(s, files[k].name))
			k++;
		if (k < nf) {
			if (!val)
				return ffdp_cli_usage("eval", "%s needs a file name", s);
			*(const char **)((char *)a + files[k].off) = val, i++;
		} else if (!strcmp(s, "--lncc-window")) {
			long long w;
			if (!val || ffdp_cli_parse_i64(val, 1, 101, &w) || w % 2 == 0)
				return ffdp_cli_usage("eval", "--lncc-window wants an odd window size 1..101");
			a->window = (int)w, i++;
		} else {
			return ffdp_cli_usage("eval", "unknown option '%s'", s);
		}
	}
	if (!a->labels_fixed != !a->labels_moved)
		return ffdp_cli_usage("eval", "--labels-fixed and --labels-moved go together");
	if (!a->fixed != !a->moved)
		return ffdp_cli_usage("eval", "--fixed-image and --moved-image go together");
	if (a->jacobian && !a->warp)
		return ffdp_cli_usage("eval", "--jacobian writes the determinant of a --warp's map: give the warp");
	if (!a->labels_fixed && !a->warp && !a->fixed)
		return ffdp_cli_usage("eval", "nothing to evaluate: give label maps, a warp or a pair of images");
	return 0;
}

/* Prefix err's message with the files it concerns. */
static ffdp_status blame(ffdp_error *err, const char *a, const char *b)
{
	char msg[FFDP_ERROR_MSG_LEN];
	snprintf(msg, sizeof(msg), "%s", err->msg);
	if (b)
		return ffdp_fail(err, err->code, "%s vs %s: %s", a, b, msg);
	return ffdp_fail(err, err->code, "%s: %s", a, msg);
}

/* Two images of one pair, on one grid; the message names both files. */
static ffdp_status read_pair(const char *pa, const char *pb, ffdp_volume *a, ffdp_volume *b, ffdp_error *err)
{
	ffdp_status s = ffdp_image_read(pa, 0, a, NULL, err);
	if (!s)
		s = ffdp_image_read(pb, 0, b, NULL, err);
	if (!s && !ffdp_grid_same(&a->grid, &b->grid, 1e-4))
		s = ffdp_fail(err, FFDP_ERR_DATA,
			      "eval: %s (%lldx%lldx%lld) and %s (%lldx%lldx%lld) are not on the same grid; resample "
			      "the second onto the first with 'ffdp apply -r %s ...'",
			      pa, (long long)a->grid.n[0], (long long)a->grid.n[1], (long long)a->grid.n[2], pb,
			      (long long)b->grid.n[0], (long long)b->grid.n[1], (long long)b->grid.n[2], pa);
	return s;
}

static ffdp_status eval_labels(const eval_args *a, eval_results *r, ffdp_error *err)
{
	ffdp_volume fa = {0}, fb = {0};
	ffdp_status s = read_pair(a->labels_fixed, a->labels_moved, &fa, &fb, err);
	if (!s && ffdp_eval_labels(&fa, &fb, 1, &r->lab, err))
		s = blame(err, a->labels_fixed, a->labels_moved);
	r->have_labels = !s;
	ffdp_volume_free(&fa);
	ffdp_volume_free(&fb);
	return s;
}

static ffdp_status eval_warp(ffdp_backend *be, const eval_args *a, eval_results *r, ffdp_error *err)
{
	ffdp_field w = {0};
	ffdp_volume det = {0};
	ffdp_status s = ffdp_field_read(a->warp, &w, err);
	if (!s && a->jacobian)
		s = ffdp_volume_alloc(&det, &w.grid, err);
	if (!s && ffdp_eval_jacobian_map(be, &w, NULL, det.data, &r->jac, err))
		s = blame(err, a->warp, NULL);
	r->have_jac = !s;
	if (!s && a->jacobian) /* det(I + dw/dx) per voxel, float32 on the warp's grid */
		s = ffdp_image_write(a->jacobian, &det, FFDP_WRITE_FLOAT32, err);
	ffdp_volume_free(&det);
	ffdp_field_free(&w);
	return s;
}

static ffdp_status eval_images(ffdp_backend *be, const eval_args *a, eval_results *r, ffdp_error *err)
{
	ffdp_volume fa = {0}, fb = {0};
	ffdp_status s = read_pair(a->fixed, a->moved, &fa, &fb, err);
	if (!s && (ffdp_eval_ncc(&fa, &fb, NULL, &r->ncc, err) ||
		   ffdp_eval_lncc2(be, &fa, &fb, a->window, &r->lncc2, err)))
		s = blame(err, a->fixed, a->moved);
	r->have_sim = !s;
	ffdp_volume_free(&fa);
	ffdp_volume_free(&fb);
	return s;
}

/* ---- the table ---------------------------------------------------------------- */

static void print_labels(const ffdp_label_eval *e)
{
	printf("%7s  %7s  %9s  %13s  %13s\n", "label", "dice", "hd95_mm", "voxels_fixed", "voxels_moved");
	int missing = 0;
	for (int i = 0; i < e->nlabels; i++) {
		const ffdp_label_stats *st = &e->labels[i];
		char hd[32];
		if (isnan(st->hd95_mm))
			snprintf(hd, sizeof(hd), "-");
		else
			snprintf(hd, sizeof(hd), "%.3f", st->hd95_mm);
		printf("%7lld  %7.4f  %9s  %13lld  %13lld%s\n", (long long)st->label, st->dice, hd, (long long)st->n_a,
		       (long long)st->n_b, !st->n_a ? "  (missing from fixed)" : !st->n_b ? "  (missing from moved)" : "");
		missing += !st->n_a || !st->n_b;
	}
	printf("mean dice %.4f over %d labels present in both maps", e->mean_dice, e->nboth);
	if (missing)
		printf(" (%d more in only one map, not averaged)", missing);
	printf("\nmean hd95 %.3f mm\n", e->mean_hd95_mm);
}

static void print_results(const eval_args *a, const eval_results *r)
{
	if (r->have_labels)
		print_labels(&r->lab);
	if (r->have_jac) {
		const ffdp_jacobian_stats *j = &r->jac;
		printf("folding: %lld of %lld voxels with det J <= 0 (%.4f %%)\n", (long long)j->folded,
		       (long long)j->voxels, 100.0 * j->folded_fraction);
		printf("det J min %.4f mean %.4f max %.4f\n", j->det_min, j->det_mean, j->det_max);
	}
	if (r->have_sim) {
		printf("ncc %.6f\n", r->ncc);
		printf("lncc2 (squared local correlation, window %d) %.6f\n", a->window, r->lncc2);
	}
}

/* ---- JSON ------------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void json_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.10g", v);
	else
		fputs("null", f);
}

static void json_key_num(FILE *f, const char *key, double v, const char *sep)
{
	fprintf(f, "\"%s\": ", key);
	json_num(f, v);
	fputs(sep, f);
}

static void json_labels(FILE *f, const eval_args *a, const ffdp_label_eval *e)
{
	fputs("  \"labels_fixed\": ", f);
	json_str(f, a->labels_fixed);
	fputs(",\n  \"labels_moved\": ", f);
	json_str(f, a->labels_moved);
	fputs(",\n  \"labels\": [", f);
	for (int i = 0; i < e->nlabels; i++) {
		const ffdp_label_stats *st = &e->labels[i];
		fprintf(f, "%s\n    {\"label\": %lld, ", i ? "," : "", (long long)st->label);
		json_key_num(f, "dice", st->dice, ", ");
		json_key_num(f, "hd95_mm", st->hd95_mm, ", ");
		fprintf(f, "\"voxels_fixed\": %lld, \"voxels_moved\": %lld, ", (long long)st->n_a, (long long)st->n_b);
		json_key_num(f, "volume_fixed_mm3", st->vol_a_mm3, ", ");
		json_key_num(f, "volume_moved_mm3", st->vol_b_mm3, "}");
	}
	fprintf(f, "\n  ],\n  \"labels_in_both\": %d,\n  ", e->nboth);
	json_key_num(f, "mean_dice", e->mean_dice, ",\n  ");
	json_key_num(f, "mean_hd95_mm", e->mean_hd95_mm, ",\n");
}

static void json_body(FILE *f, const eval_args *a, const eval_results *r)
{
	fputs("{\n", f);
	if (r->have_labels)
		json_labels(f, a, &r->lab);
	if (r->have_jac) {
		const ffdp_jacobian_stats *j = &r->jac;
		fputs("  \"warp\": {\"file\": ", f);
		json_str(f, a->warp);
		fprintf(f, ", \"voxels\": %lld, \"folded\": %lld, ", (long long)j->voxels, (long long)j->folded);
		json_key_num(f, "folded_fraction", j->folded_fraction, ", ");
		json_key_num(f, "det_min", j->det_min, ", ");
		json_key_num(f, "det_mean", j->det_mean, ", ");
		json_key_num(f, "det_max", j->det_max, "},\n");
	}
	if (r->have_sim) {
		fputs("  \"fixed_image\": ", f);
		json_str(f, a->fixed);
		fputs(", \"moved_image\": ", f);
		json_str(f, a->moved);
		fputs(",\n  ", f);
		json_key_num(f, "ncc", r->ncc, ", ");
		json_key_num(f, "lncc2_squared", r->lncc2, ", ");
		fprintf(f, "\"lncc_window\": %d,\n", a->window);
	}
	fprintf(f, "  \"ffdp_version\": \"%s\"\n}\n", ffdp_version());
}

static ffdp_status write_json(const eval_args *a, const eval_results *r, ffdp_error *err)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory", a->json);
	json_body(f, a, r);
	ffdp_status s = fclose(f) ? ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory", a->json)
				  : ffdp_write_text(a->json, text, err);
	free(text);
	return s;
}

int ffdp_cmd_eval(int argc, char **argv)
{
	eval_args a = {.window = 9};
	int rc = parse_args(argc, argv, &a);
	if (rc)
		return rc;
	ffdp_error err = {0};
	eval_results r;
	memset(&r, 0, sizeof(r));
	ffdp_backend *be = NULL;
	ffdp_status s = a.json ? ffdp_check_writable(a.json, &err) : FFDP_OK;
	if (!s)
		s = ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err);
	if (!s && a.labels_fixed)
		s = eval_labels(&a, &r, &err);
	if (!s && a.warp)
		s = eval_warp(be, &a, &r, &err);
	if (!s && a.fixed)
		s = eval_images(be, &a, &r, &err);
	if (!s) {
		print_results(&a, &r);
		if (a.json)
			s = write_json(&a, &r, &err);
	}
	if (s)
		rc = ffdp_cli_fail(&err);
	ffdp_backend_close(be);
	ffdp_label_eval_free(&r.lab);
	return rc;
}

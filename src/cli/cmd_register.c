/* ffdp register: ANTs-like stages or presets, ANTs-compatible outputs. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct reg_cli {
	const char *fixed, *moving, *prefix, *fmask, *mmask, *init;
	const char *backend; /* cpu, cuda or auto (NULL): applied after parsing, so a
				later preset cannot reset it */
	long long device;
	int device_given; /* --device: else under mpirun each rank takes one by its local rank */
	const char *transport; /* how ranks moved planes (report) */
	const char *moments; /* f32 or bf16 (NULL: the default); applied after parsing */
	const char *images;  /* f32 or u16 (NULL: the default); applied after parsing */
	double winsor[2];    /* --winsorize-image-intensities; applied after parsing */
	int winsor_given;
	int ants_names;      /* --output-names ants: antsRegistration's file names */
	ffdp_reg_opts opts;
	int explicit_stages;
} reg_cli;

/* auto: the GPU when one is present (built with CUDA), else the CPU. */
static int pick_backend(reg_cli *c)
{
	const char *b = c->backend ? c->backend : "auto";
	if (!strcmp(b, "cpu"))
		c->opts.backend = FFDP_BACKEND_CPU;
	else if (!strcmp(b, "cuda"))
		c->opts.backend = FFDP_BACKEND_CUDA;
	else if (!strcmp(b, "auto"))
		c->opts.backend = ffdp_cuda_device_count() > c->device ? FFDP_BACKEND_CUDA : FFDP_BACKEND_CPU;
	else
		return ffdp_cli_usage("register", "--backend is cpu, cuda or auto");
	c->opts.device = (int)c->device;
	return 0;
}

/* "Name[a,b,c]" -> name and up to 8 numeric/word arguments. */
static int split_spec(const char *spec, char *name, size_t nlen, char args[8][32], int *nargs)
{
	const char *br = strchr(spec, '[');
	size_t n = br ? (size_t)(br - spec) : strlen(spec);
	if (n == 0 || n >= nlen)
		return -1;
	memcpy(name, spec, n);
	name[n] = '\0';
	*nargs = 0;
	if (!br)
		return 0;
	const char *end = strrchr(spec, ']');
	if (!end || end[1] || end < br)
		return -1;
	const char *p = br + 1;
	while (p < end) {
		const char *q = p;
		while (q < end && *q != ',')
			q++;
		if (*nargs >= 8 || (size_t)(q - p) >= 32)
			return -1;
		memcpy(args[*nargs], p, (size_t)(q - p));
		args[*nargs][q - p] = '\0';
		(*nargs)++;
		p = q < end ? q + 1 : q;
	}
	return 0;
}

static int ieq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++)
		if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
			return 0;
	return *a == *b;
}

static int parse_transform(const char *spec, ffdp_stage *st)
{
	char name[32], args[8][32];
	int na;
	if (split_spec(spec, name, sizeof(name), args, &na))
		return -1;
	static const struct {
		const char *name;
		ffdp_stage_kind kind;
	} kinds[] = {{"moments", FFDP_STAGE_MOMENTS}, {"rigid", FFDP_STAGE_RIGID}, {"affine", FFDP_STAGE_AFFINE},
		     {"greedy", FFDP_STAGE_GREEDY},   {"syn", FFDP_STAGE_SYN}};
	int found = -1;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (ieq(name, kinds[i].name))
			found = (int)i;
	if (found < 0)
		return -1;
	*st = ffdp_stage_default(kinds[found].kind);
	double v[8];
	for (int i = 0; i < na; i++)
		if (ffdp_cli_parse_f64(args[i], 0, 1e6, &v[i]))
			return -1;
	if (st->kind == FFDP_STAGE_MOMENTS) {
		if (na > 1 || (na == 1 && v[0] != 1 && v[0] != 2))
			return -1;
		if (na == 1)
			st->moments_order = (int)v[0];
		return 0;
	}
	if (na > 0)
		st->lr = v[0];
	if (st->kind == FFDP_STAGE_GREEDY || st->kind == FFDP_STAGE_SYN) {
		if (na > 3)
			return -1;
		if (na > 1)
			st->sigma_grad = v[1];
		if (na > 2)
			st->sigma_warp = v[2];
	} else if (na > 1) {
		return -1;
	}
	return 0;
}

static int parse_metric(const char *spec, ffdp_metric *mt)
{
	char name[32], args[8][32];
	int na;
	if (split_spec(spec, name, sizeof(name), args, &na))
		return -1;
	long long k;
	if (ieq(name, "cc") || ieq(name, "lncc")) {
		mt->kind = FFDP_METRIC_LNCC;
		if (na > 2 || (na >= 1 && (ffdp_cli_parse_i64(args[0], 1, 99, &k) || k % 2 == 0)))
			return -1;
		if (na >= 1)
			mt->lncc_k = (int)k;
		if (na == 2) {
			if (ieq(args[1], "exact"))
				mt->lncc_exact = 1;
			else if (ieq(args[1], "ants"))
				mt->lncc_exact = 0;
			else
				return -1;
		}
	} else if (ieq(name, "mi") || ieq(name, "mattes")) {
		mt->kind = FFDP_METRIC_MI;
		if (na > 2 || (na >= 1 && ffdp_cli_parse_i64(args[0], 4, 1024, &k)))
			return -1;
		if (na >= 1)
			mt->mi_bins = (int)k;
		if (na == 2) {
			if (ieq(args[1], "gaussian"))
				mt->mi_kernel = FFDP_MI_GAUSSIAN;
			else if (ieq(args[1], "bspline"))
				mt->mi_kernel = FFDP_MI_BSPLINE3;
			else
				return -1;
		}
	} else if (ieq(name, "mse") || ieq(name, "meansquares")) {
		mt->kind = FFDP_METRIC_MSE;
		if (na)
			return -1;
	} else {
		return -1;
	}
	return 0;
}

/* "200x100x50" -> counts; returns how many, -1 on error. */
static int parse_x_list(const char *s, double *out, int max, int integers)
{
	int n = 0;
	char buf[256];
	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	for (char *tok = strtok(buf, "x"); tok; tok = strtok(NULL, "x")) {
		double v;
		if (n >= max || ffdp_cli_parse_f64(tok, 0, 1e7, &v) || (integers && v != floor(v)))
			return -1;
		out[n++] = v;
	}
	return n;
}

static int parse_convergence(const char *spec, ffdp_stage *st)
{
	/* 200x100x50 or [200x100x50,1e-6,10] */
	char name[256], args[8][32];
	int na = 0;
	const char *list = spec;
	if (spec[0] == '[') {
		char tmp[300];
		snprintf(tmp, sizeof(tmp), "c%s", spec);
		if (split_spec(tmp, name, sizeof(name), args, &na) || na < 1 || na > 3)
			return -1;
		list = args[0];
	}
	double it[FFDP_MAX_LEVELS];
	int n = parse_x_list(list, it, FFDP_MAX_LEVELS, 1);
	if (n < 1)
		return -1;
	for (int l = 0; l < n; l++)
		st->iters[l] = (int)it[l];
	if (st->nlevels != n) {
		/* shrink factors follow unless given: halve per level down to 1 */
		for (int l = 0; l < n; l++)
			st->shrink[l] = pow(2.0, n - 1 - l);
		st->nlevels = n;
	}
	if (na >= 2 && ffdp_cli_parse_f64(args[1], 0, 1, &st->tol))
		return -1;
	if (na == 3) {
		long long w;
		if (ffdp_cli_parse_i64(args[2], 2, 64, &w))
			return -1;
		st->window = (int)w;
	}
	return 0;
}

static int parse_shrink(const char *spec, ffdp_stage *st)
{
	double f[FFDP_MAX_LEVELS];
	int n = parse_x_list(spec, f, FFDP_MAX_LEVELS, 0);
	if (n < 1)
		return -1;
	for (int l = 0; l < n; l++) {
		if (f[l] < 1)
			return -1;
		st->shrink[l] = f[l];
	}
	if (n != st->nlevels) {
		for (int l = st->nlevels; l < n; l++)
			st->iters[l] = st->nlevels > 0 ? st->iters[st->nlevels - 1] : 50;
		st->nlevels = n;
	}
	return 0;
}

/* ANTs' "[lo,hi]" (or "lo,hi"): quantiles in [0, 1], or percentiles when
 * hi > 1 (FireANTs takes either). */
static int parse_winsor(const char *spec, double q[2])
{
	char buf[128];
	size_t n = strlen(spec);
	if (n >= sizeof(buf))
		return -1;
	if (spec[0] == '[' && n >= 2 && spec[n - 1] == ']')
		spec++, n -= 2;
	memcpy(buf, spec, n);
	buf[n] = '\0';
	char *comma = strchr(buf, ',');
	if (!comma)
		return -1;
	*comma = '\0';
	if (ffdp_cli_parse_f64(buf, 0, 100, &q[0]) || ffdp_cli_parse_f64(comma + 1, 0, 100, &q[1]))
		return -1;
	if (q[1] > 1.0)
		q[0] /= 100.0, q[1] /= 100.0;
	return q[0] < q[1] && q[1] <= 1.0 ? 0 : -1;
}

static int parse_args(int argc, char **argv, reg_cli *c)
{
	memset(c, 0, sizeof(*c));
	ffdp_reg_preset("default", &c->opts, NULL);
	ffdp_stage *cur = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-q") || !strcmp(a, "--quiet") || !strcmp(a, "-v") || !strcmp(a, "--verbose"))
			continue;
		if (!strcmp(a, "--no-inverse")) {
			c->opts.want_inverse = 0;
			continue;
		}
		if (!strncmp(a, "--", 2) && (!strcmp(a + 2, "rigid") || !strcmp(a + 2, "affine") ||
					      !strcmp(a + 2, "greedy") || !strcmp(a + 2, "syn"))) {
			if (c->explicit_stages)
				return ffdp_cli_usage("register", "%s and --transform do not mix", a);
			int inv = c->opts.want_inverse;
			ffdp_reg_preset(a + 2, &c->opts, NULL);
			c->opts.want_inverse = inv;
			continue;
		}
		if (!val)
			return ffdp_cli_usage("register", "%s needs a value", a);
		i++;
		if (!strcmp(a, "-f") || !strcmp(a, "--fixed"))
			c->fixed = val;
		else if (!strcmp(a, "-m") || !strcmp(a, "--moving"))
			c->moving = val;
		else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
			c->prefix = val;
		else if (!strcmp(a, "--fixed-mask"))
			c->fmask = val;
		else if (!strcmp(a, "--moving-mask"))
			c->mmask = val;
		else if (!strcmp(a, "--initial-transform"))
			c->init = val;
		else if (!strcmp(a, "--preset")) {
			if (ffdp_reg_preset(val, &c->opts, NULL))
				return ffdp_cli_usage("register", "unknown preset '%s'", val);
		} else if (!strcmp(a, "--backend")) {
			c->backend = val;
		} else if (!strcmp(a, "--moments")) {
			if (strcmp(val, "f32") && strcmp(val, "bf16"))
				return ffdp_cli_usage("register", "--moments is f32 or bf16");
			c->moments = val;
		} else if (!strcmp(a, "--images")) {
			if (strcmp(val, "f32") && strcmp(val, "u16"))
				return ffdp_cli_usage("register", "--images is f32 or u16");
			c->images = val;
		} else if (!strcmp(a, "--winsorize-image-intensities") || !strcmp(a, "--winsorize")) {
			if (parse_winsor(val, c->winsor))
				return ffdp_cli_usage("register", "%s wants [lo,hi]: quantiles 0 <= lo < hi <= 1 (or "
								 "percentiles, e.g. [0.5,99.5]), not '%s'", a, val);
			c->winsor_given = 1;
		} else if (!strcmp(a, "--output-names")) {
			if (strcmp(val, "ffdp") && strcmp(val, "ants"))
				return ffdp_cli_usage("register", "--output-names is ffdp or ants");
			c->ants_names = !strcmp(val, "ants");
		} else if (!strcmp(a, "--device")) {
			if (ffdp_cli_parse_i64(val, 0, 1024, &c->device))
				return ffdp_cli_usage("register", "--device wants a GPU number");
			c->device_given = 1;
		} else if (!strcmp(a, "--transform") || !strcmp(a, "-t")) {
			if (!c->explicit_stages)
				c->opts.nstages = 0;
			c->explicit_stages = 1;
			if (c->opts.nstages >= FFDP_MAX_STAGES)
				return ffdp_cli_usage("register", "at most %d stages", FFDP_MAX_STAGES);
			cur = &c->opts.stages[c->opts.nstages++];
			if (parse_transform(val, cur))
				return ffdp_cli_usage("register", "bad --transform '%s'", val);
		} else if (!strcmp(a, "--metric") || !strcmp(a, "--convergence") || !strcmp(a, "--shrink-factors")) {
			if (!cur)
				return ffdp_cli_usage("register", "%s must follow a --transform", a);
			int bad = !strcmp(a, "--metric")	 ? parse_metric(val, &cur->metric)
				  : !strcmp(a, "--convergence") ? parse_convergence(val, cur)
								 : parse_shrink(val, cur);
			if (bad)
				return ffdp_cli_usage("register", "bad %s '%s'", a, val);
		} else {
			return ffdp_cli_usage("register", "unknown option '%s'", a);
		}
	}
	if (!c->fixed || !c->moving || !c->prefix)
		return ffdp_cli_usage("register", "-f FIXED, -m MOVING and -o PREFIX are required");
	if (c->moments)
		c->opts.moments = strcmp(c->moments, "bf16") ? FFDP_MOMENTS_F32 : FFDP_MOMENTS_BF16;
	if (c->images)
		c->opts.images16 = !strcmp(c->images, "u16");
	if (c->winsor_given)
		c->opts.winsorize[0] = c->winsor[0], c->opts.winsorize[1] = c->winsor[1];
	return pick_backend(c);
}

/* "fetch": moving planes each rank fetched in a distributed stage, and
 * what a ring (every rank receiving every other rank's planes at each
 * sampler call) would have moved for the same calls. */
static size_t report_fetch(char *buf, size_t cap, const ffdp_reg_result *r, int k, const uint64_t *traffic,
			   int nranks)
{
	size_t n = 0;
	int64_t iters = 0;
	uint64_t recv = 0, ring = 0;
	for (int l = 0; l < r->stages[k].nlevels; l++)
		iters += r->stages[k].iters[l];
	for (int q = 0; q < nranks; q++) {
		const uint64_t *e = traffic + (q * r->nstages + k) * FFDP_CLI_TRAFFIC;
		recv += e[0], ring += e[2];
	}
#define APPF(...) (n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__))
	APPF(", \"fetch\": {\"bytes_per_iteration\": %.0f, \"ring_bytes_per_iteration\": %.0f, "
	     "\"fraction_of_ring\": %.4f, \"recv_bytes_per_rank\": [",
	     iters ? (double)recv / (double)iters : 0.0, iters ? (double)ring / (double)iters : 0.0,
	     ring ? (double)recv / (double)ring : 0.0);
	for (int q = 0; q < nranks; q++)
		APPF("%s%llu", q ? ", " : "", (unsigned long long)traffic[(q * r->nstages + k) * FFDP_CLI_TRAFFIC]);
	APPF("], \"sent_bytes_per_rank\": [");
	for (int q = 0; q < nranks; q++)
		APPF("%s%llu", q ? ", " : "",
		     (unsigned long long)traffic[(q * r->nstages + k) * FFDP_CLI_TRAFFIC + 1]);
	APPF("]}");
#undef APPF
	return n;
}

static int write_report(const char *path, const reg_cli *c, const ffdp_reg_result *r, const uint64_t *traffic,
			int nranks, ffdp_error *err)
{
	char buf[16384];
	size_t n = 0;
#define APP(...) (n += (size_t)snprintf(buf + n, n < sizeof(buf) ? sizeof(buf) - n : 0, __VA_ARGS__))
	APP("{\n  \"ffdp_version\": \"%s\",\n  \"fixed\": \"%s\",\n  \"moving\": \"%s\",\n", ffdp_version(), c->fixed,
	    c->moving);
	APP("  \"backend\": \"%s\",\n  \"threads\": %d,\n  \"mpi_ranks\": %d,\n  \"mpi_transport\": \"%s\",\n"
	    "  \"seconds\": %.3f,\n  \"peak_memory_mb\": %ld,\n",
	    c->opts.backend == FFDP_BACKEND_CUDA ? "cuda" : "cpu", ffdp_num_threads(), nranks,
	    c->transport ? c->transport : "none", r->seconds, ffdp_cli_peak_rss_mb());
	/* storage of Adam's moments and of the images (memory per voxel) */
	APP("  \"moments\": \"%s\",\n  \"images\": \"%s\",\n",
	    c->opts.moments == FFDP_MOMENTS_BF16 ? "bf16" : "f32", c->opts.images16 && !c->opts.dist ? "u16" : "f32");
	if (c->winsor_given) /* the quantiles each image was clipped at before [0, 1] */
		APP("  \"winsorize\": [%.9g, %.9g],\n", c->opts.winsorize[0], c->opts.winsorize[1]);
	else
		APP("  \"winsorize\": null,\n");
	APP("  \"affine\": [");
	for (int i = 0; i < 12; i++)
		APP("%s%.10g", i ? ", " : "", r->T.m[i]);
	APP("],\n  \"stages\": [\n");
	for (int k = 0; k < r->nstages; k++) {
		const ffdp_stage_report *s = &r->stages[k];
		APP("    {\"stage\": \"%s\", \"seconds\": %.3f, \"final_loss\": %.6g, \"iterations\": [",
		    ffdp_stage_name(s->kind), s->seconds, s->final_loss);
		for (int l = 0; l < s->nlevels; l++)
			APP("%s%d", l ? ", " : "", s->iters[l]);
		APP("]");
		if (nranks > 1 && s->kind != FFDP_STAGE_MOMENTS)
			n += report_fetch(buf + n, n < sizeof(buf) ? sizeof(buf) - n : 0, r, k, traffic, nranks);
		APP("}%s\n", k + 1 < r->nstages ? "," : "");
	}
	APP("  ]\n}\n");
#undef APP
	if (n >= sizeof(buf))
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: report too long", path);
	return ffdp_write_text(path, buf, err);
}

/* The images (every rank's planes under mpirun), then on rank 0 the affine
 * and the report. */
static int write_outputs(const reg_cli *c, const cli_mpi *mpi, const ffdp_volume *fixed, const ffdp_volume *moving,
			 const ffdp_reg_result *r, const uint64_t *traffic, ffdp_error *err)
{
	char path[4096];
	ffdp_backend *be = NULL;
	ffdp_volume warped = {0};
	ffdp_field w = {0};
	ffdp_status s = FFDP_OK;
	const ffdp_cli_names *nm = ffdp_cli_names_of(c->ants_names);
#define OUT(suffix) (snprintf(path, sizeof(path), "%s%s", c->prefix, suffix), path)
	if (mpi->dist) {
		s = ffdp_cli_mpi_write_images(mpi, c->prefix, nm, fixed, moving, r, err);
	} else {
		s = ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, err);
		if (!s)
			s = ffdp_warp_volume(be, moving, &fixed->grid, &r->T, r->has_warp ? &r->u : NULL,
					     FFDP_INTERP_LINEAR, &warped, err);
		if (!s)
			s = ffdp_image_write(OUT(nm->warped), &warped, FFDP_WRITE_FLOAT32, err);
		if (!s && r->has_warp) {
			s = ffdp_warp_to_ants(&r->u, &r->T, &w, err);
			if (!s)
				s = ffdp_field_write(OUT(nm->warp), &w, err);
		}
		if (!s && r->has_inverse)
			s = ffdp_field_write(OUT(nm->inverse), &r->u_inv, err);
		if (!s)
			s = ffdp_qc_write_png(OUT(nm->qc), fixed, &warped, FFDP_QC_OVERLAY, err);
	}
	if (!s && mpi->rank == 0)
		s = ffdp_affine_write(OUT(nm->affine), &r->T, err);
	if (!s && mpi->rank == 0)
		s = write_report(OUT(nm->report), c, r, traffic, mpi->size, err);
#undef OUT
	ffdp_field_free(&w);
	ffdp_volume_free(&warped);
	ffdp_backend_close(be);
	return s;
}

int ffdp_cmd_register(int argc, char **argv)
{
	reg_cli c;
	int rc = parse_args(argc, argv, &c);
	if (rc)
		return rc;
	ffdp_error err = {0};
	cli_mpi mpi;
	ffdp_status s = ffdp_cli_mpi_start(&mpi, &argc, &argv, &err);
	if (s)
		return ffdp_cli_fail(&err);
	c.opts.dist = mpi.dist;
	if (mpi.dist && c.opts.backend == FFDP_BACKEND_CUDA && !c.device_given) {
		/* one GPU per rank of a host, round robin: ranks sharing one stage
		 * their planes through host memory (ffdp_dist_use_backend) */
		int ndev = ffdp_cuda_device_count();
		c.opts.device = ndev > 0 ? ffdp_cli_mpi_local_rank(&mpi) % ndev : 0;
	}
	c.opts.slab_inputs = mpi.dist != NULL; /* each rank reads its planes */
	ffdp_volume fixed = {0}, moving = {0}, fmask = {0}, mmask = {0};
	ffdp_reg_result res;
	memset(&res, 0, sizeof(res));
	char probe[4096];
	snprintf(probe, sizeof(probe), "%s%s", c.prefix, ffdp_cli_names_of(c.ants_names)->warped);
	int told = 0; /* another rank printed why this one stops */
	if (mpi.dist) {
		const char *paths[4] = {c.fixed, c.moving, NULL, NULL};
		ffdp_volume *vols[4] = {&fixed, &moving, NULL, NULL};
		int nv = 2;
		if (c.fmask)
			paths[nv] = c.fmask, vols[nv++] = &fmask;
		if (c.mmask)
			paths[nv] = c.mmask, vols[nv++] = &mmask;
		s = ffdp_cli_mpi_read(&mpi, paths, vols, nv, probe, c.init, &c.opts.init, &told, &err);
	} else {
		s = ffdp_check_writable(probe, &err);
		if (!s)
			s = ffdp_image_read(c.fixed, 0, &fixed, NULL, &err);
		if (!s)
			s = ffdp_image_read(c.moving, 0, &moving, NULL, &err);
		if (!s && c.fmask)
			s = ffdp_image_read(c.fmask, 0, &fmask, NULL, &err);
		if (!s && c.mmask)
			s = ffdp_image_read(c.mmask, 0, &mmask, NULL, &err);
		if (!s && c.init)
			s = ffdp_affine_read(c.init, &c.opts.init, &err);
	}
	c.opts.fixed_mask = c.fmask ? &fmask : NULL;
	c.opts.moving_mask = c.mmask ? &mmask : NULL;
	if (!s) {
		if (c.opts.backend == FFDP_BACKEND_CUDA)
			ffdp_log_info("register: %s -> %s, %d stage%s, CUDA device %d", c.moving, c.fixed, c.opts.nstages,
				      c.opts.nstages == 1 ? "" : "s", c.opts.device);
		else
			ffdp_log_info("register: %s -> %s, %d stage%s, CPU, %d thread%s%s", c.moving, c.fixed,
				      c.opts.nstages, c.opts.nstages == 1 ? "" : "s", ffdp_num_threads(),
				      ffdp_num_threads() == 1 ? "" : "s", mpi.size > 1 ? " per rank" : "");
		if (mpi.dist && fixed.grid.n[2] == 1) {
			/* 2-D: one plane, which rank 0 holds whole; it registers alone */
			ffdp_log_info("register: a 2-D pair under %d MPI rank%s: rank 0 registers it", mpi.size,
				      mpi.size == 1 ? "" : "s");
			ffdp_reg_opts one = c.opts;
			one.dist = NULL, one.slab_inputs = 0;
			if (mpi.rank == 0)
				s = ffdp_register(&fixed, &moving, &one, &res, &err);
			s = ffdp_cli_mpi_solo_result(&mpi, s, &res, &fixed.grid, &told, &err);
		} else {
			if (mpi.size > 1)
				ffdp_log_info("register: %d MPI ranks, z-slabs of the fixed grid", mpi.size);
			s = ffdp_register(&fixed, &moving, &c.opts, &res, &err);
		}
	}
	uint64_t *traffic = calloc((size_t)mpi.size * FFDP_CLI_TRAFFIC * FFDP_MAX_STAGES, sizeof(uint64_t));
	if (!s && !traffic)
		s = ffdp_fail(&err, FFDP_ERR_NOMEM, "no memory for the traffic report");
	if (!s)
		ffdp_cli_mpi_traffic(&mpi, &res, traffic);
	c.transport = ffdp_cli_mpi_transport(&mpi);
	if (!s)
		s = write_outputs(&c, &mpi, &fixed, &moving, &res, traffic, &err);
	free(traffic);
	if (!s) {
		for (int k = 0; k < res.nstages; k++)
			ffdp_log_info("  %-8s %7.2f s  loss %.5f", ffdp_stage_name(res.stages[k].kind),
				      res.stages[k].seconds, res.stages[k].final_loss);
		ffdp_log_info("register: done in %.2f s, peak memory %ld MB; wrote %s%s*", res.seconds, ffdp_cli_peak_rss_mb(),
			      c.prefix, c.ants_names ? "" : "_");
	}
	ffdp_reg_result_free(&res);
	ffdp_volume_free(&fixed);
	ffdp_volume_free(&moving);
	ffdp_volume_free(&fmask);
	ffdp_volume_free(&mmask);
	int quiet = 0; /* every rank: one line, from the rank where it went wrong */
	s = ffdp_cli_mpi_agree(&mpi, s, &quiet, &err);
	told = told || quiet;
	rc = told ? 1 : s ? ffdp_cli_fail(&err) : 0; /* before MPI_Finalize, as above */
	ffdp_cli_mpi_end(&mpi);
	return rc;
}

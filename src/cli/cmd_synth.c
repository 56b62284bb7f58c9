/* ffdp synth: a phantom pair of any size, generated and written slab by
 * slab, so memory is O(slab) however large the volume; under mpirun every
 * rank generates and writes its own z-slab of the same files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#ifdef FFDP_HAVE_MPI
#include <mpi.h>

#include "ffdp/dist.h"
#endif

enum { SLAB_VOXELS = 4 << 20, NOUT = 5 };

typedef struct synth_cli {
	const char *prefix;
	ffdp_phantom_opts o;
	int labels, truth;
	int64_t slab; /* planes per step; 0: about SLAB_VOXELS */
} synth_cli;

/* One output file, written by this process alone or by every rank. */
typedef struct out_file {
	const char *suffix;
	int ncomp;
	ffdp_write_type type;
	int on;
	char path[4096];
	ffdp_image_writer *w;
#ifdef FFDP_HAVE_MPI
	ffdp_dist_writer *dw;
#endif
} out_file;

typedef struct synth_run {
	int rank, size;
	ffdp_slab s;
#ifdef FFDP_HAVE_MPI
	ffdp_dist *d; /* NULL when not under mpirun */
#endif
} synth_run;

static int parse_size(const char *s, int64_t n[3])
{
	long long a, b, c;
	char tail;
	if (sscanf(s, "%lldx%lldx%lld%c", &a, &b, &c, &tail) != 3 || a < 8 || b < 8 || c < 1 || a > 1000000 ||
	    b > 1000000 || c > 1000000)
		return -1;
	n[0] = a, n[1] = b, n[2] = c;
	return 0;
}

static int parse(int argc, char **argv, synth_cli *c)
{
	memset(c, 0, sizeof(*c));
	c->o = ffdp_phantom_defaults();
	c->o.spacing[0] = c->o.spacing[1] = c->o.spacing[2] = 1.0;
	c->o.amplitude_mm = 8.0;
	c->o.n[0] = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		double f;
		long long k;
		if (!strcmp(a, "-q") || !strcmp(a, "--quiet") || !strcmp(a, "-v") || !strcmp(a, "--verbose"))
			continue;
		if (!strcmp(a, "--labels") || !strcmp(a, "--truth")) {
			*(a[2] == 'l' ? &c->labels : &c->truth) = 1;
			continue;
		}
		if (!val)
			return ffdp_cli_usage("synth", "%s needs a value", a);
		i++;
		if (!strcmp(a, "-o") || !strcmp(a, "--output"))
			c->prefix = val;
		else if (!strcmp(a, "--size")) {
			if (parse_size(val, c->o.n))
				return ffdp_cli_usage("synth", "--size wants NXxNYxNZ (NX, NY >= 8, NZ >= 1)");
		} else if (!strcmp(a, "--spacing")) {
			if (ffdp_cli_parse_f64(val, 1e-4, 100, &f))
				return ffdp_cli_usage("synth", "--spacing wants a voxel size in mm");
			c->o.spacing[0] = c->o.spacing[1] = c->o.spacing[2] = f;
		} else if (!strcmp(a, "--amplitude")) {
			if (ffdp_cli_parse_f64(val, 0, 1000, &c->o.amplitude_mm))
				return ffdp_cli_usage("synth", "--amplitude wants a peak displacement in mm");
		} else if (!strcmp(a, "--seed")) {
			if (ffdp_cli_parse_i64(val, 0, 1LL << 62, &k))
				return ffdp_cli_usage("synth", "--seed wants a non-negative integer");
			c->o.seed = (uint64_t)k;
		} else if (!strcmp(a, "--slab")) {
			if (ffdp_cli_parse_i64(val, 1, 1LL << 40, &k))
				return ffdp_cli_usage("synth", "--slab wants a number of planes >= 1");
			c->slab = k;
		} else {
			return ffdp_cli_usage("synth", "unknown option '%s'", a);
		}
	}
	if (!c->prefix)
		return ffdp_cli_usage("synth", "-o PREFIX is required");
	if (!c->o.n[0])
		return ffdp_cli_usage("synth", "--size NXxNYxNZ is required");
	return 0;
}

static ffdp_status out_open(const synth_run *r, out_file *f, const ffdp_grid *g, ffdp_error *err)
{
	static const ffdp_value_range labels = {0.0, FFDP_PH_NLABELS - 1, 0, 0};
	const ffdp_value_range *range = f->type == FFDP_WRITE_LABEL16 ? &labels : NULL;
#ifdef FFDP_HAVE_MPI
	if (r->d)
		return ffdp_dist_writer_open(r->d, f->path, g, f->ncomp, f->type, range, &r->s, &f->dw, err);
#endif
	(void)r;
	return ffdp_image_writer_open(f->path, g, f->ncomp, f->type, range, &f->w, err);
}

static ffdp_status out_append(out_file *f, float *const planes[3], int64_t n, ffdp_error *err)
{
	const float *p[3] = {planes[0], planes[1], planes[2]};
#ifdef FFDP_HAVE_MPI
	if (f->dw)
		return ffdp_dist_writer_append(f->dw, p, n, err);
#endif
	return ffdp_image_writer_append(f->w, p, n, err);
}

/* Collective under MPI; commit only when every plane went in (ok), else abort. */
static ffdp_status out_close(out_file *f, int ok, ffdp_error *err)
{
	ffdp_status s = FFDP_OK;
#ifdef FFDP_HAVE_MPI
	if (f->dw)
		s = ffdp_dist_writer_commit(f->dw, err); /* fails on every rank if any rank fell short */
	f->dw = NULL;
#endif
	if (f->w && ok)
		s = ffdp_image_writer_commit(f->w, err);
	else if (f->w)
		ffdp_image_writer_abort(f->w);
	f->w = NULL;
	return s;
}

/* Generate this process's planes step by step and append them to every output. */
static ffdp_status generate(const synth_cli *c, const synth_run *r, const ffdp_phantom *ph, out_file *out,
			    ffdp_error *err)
{
	const ffdp_grid *g = ffdp_phantom_grid(ph);
	int64_t plane = g->n[0] * g->n[1], step = c->slab ? c->slab : SLAB_VOXELS / plane;
	step = step < 1 ? 1 : step;
	step = step > r->s.z1 - r->s.z0 ? r->s.z1 - r->s.z0 : step;
	float *buf[7] = {NULL};
	ffdp_status st = FFDP_OK;
	int nbuf = 2 + 2 * c->labels + (c->truth ? ffdp_grid_dim(g) : 0);
	for (int k = 0; k < nbuf && st == FFDP_OK; k++)
		if (!(buf[k] = ffdp_alloc((size_t)(step * plane) * sizeof(float), err)))
			st = FFDP_ERR_NOMEM;
	ffdp_phantom_planes pl = {buf[0], buf[1], c->labels ? buf[2] : NULL, c->labels ? buf[3] : NULL,
				  {c->truth ? buf[nbuf - ffdp_grid_dim(g)] : NULL, NULL, NULL}};
	for (int a = 1; c->truth && a < ffdp_grid_dim(g); a++)
		pl.u[a] = buf[nbuf - ffdp_grid_dim(g) + a];
	float *const planes[NOUT][3] = {{pl.fixed}, {pl.moving}, {pl.fixed_labels}, {pl.moving_labels},
					{pl.u[0], pl.u[1], pl.u[2]}};
	for (int64_t z = r->s.z0; z < r->s.z1 && st == FFDP_OK; z += step) {
		int64_t n = z + step > r->s.z1 ? r->s.z1 - z : step;
		st = ffdp_phantom_generate(ph, z, z + n, &pl, err);
		for (int k = 0; k < NOUT && st == FFDP_OK; k++)
			if (out[k].on)
				st = out_append(&out[k], planes[k], n, err);
		if (r->rank == 0)
			ffdp_log_debug("synth: planes [%lld, %lld) written", (long long)z, (long long)(z + n));
	}
	for (int k = 0; k < nbuf; k++)
		ffdp_free(buf[k]);
	return st;
}

static ffdp_status run_synth(const synth_cli *c, const synth_run *r, ffdp_error *err)
{
	ffdp_phantom *ph = NULL;
	out_file out[NOUT] = {
		{.suffix = "fixed", .ncomp = 1, .type = FFDP_WRITE_FLOAT32, .on = 1},
		{.suffix = "moving", .ncomp = 1, .type = FFDP_WRITE_FLOAT32, .on = 1},
		{.suffix = "fixed_labels", .ncomp = 1, .type = FFDP_WRITE_LABEL16, .on = c->labels},
		{.suffix = "moving_labels", .ncomp = 1, .type = FFDP_WRITE_LABEL16, .on = c->labels},
		{.suffix = "true_warp", .ncomp = 3, .type = FFDP_WRITE_FLOAT32, .on = c->truth},
	};
	ffdp_status st = ffdp_phantom_create(&c->o, &ph, err);
	if (st)
		return st;
	const ffdp_grid *g = ffdp_phantom_grid(ph);
	out[4].ncomp = ffdp_grid_dim(g);
	int opened = 0;
	for (; opened < NOUT && st == FFDP_OK; opened++) {
		out_file *f = &out[opened];
		snprintf(f->path, sizeof(f->path), "%s_%s.nii.gz", c->prefix, f->suffix);
		if (f->on)
			st = out_open(r, f, g, err);
	}
	/* A failed open failed on every rank: give up the ones before it. */
	if (st) {
		for (int k = 0; k < opened - 1; k++) {
#ifdef FFDP_HAVE_MPI
			ffdp_dist_writer_abort(out[k].dw);
#endif
			ffdp_image_writer_abort(out[k].w);
		}
		ffdp_phantom_free(ph);
		return st;
	}
	ffdp_error local = {0};
	ffdp_status gen = generate(c, r, ph, out, &local);
	if (gen) /* this rank's own failure; commit below makes it everyone's */
		ffdp_log_error("%s%s", r->size > 1 ? "rank failed: " : "", local.msg);
	for (int k = 0; k < NOUT; k++) {
		ffdp_error e = {0};
		ffdp_status s = out[k].on ? out_close(&out[k], gen == FFDP_OK, &e) : FFDP_OK;
		if (s && st == FFDP_OK)
			st = s, *err = e;
	}
	if (gen && st == FFDP_OK)
		st = gen, *err = local;
	ffdp_phantom_free(ph);
	return st;
}

int ffdp_cmd_synth(int argc, char **argv)
{
	synth_cli c;
	int rc = parse(argc, argv, &c);
	if (rc)
		return rc;
	synth_run r = {.rank = 0, .size = 1, .s = {c.o.n[2], 0, c.o.n[2]}};
	ffdp_error err = {0};
#ifdef FFDP_HAVE_MPI
	/* Only under a launcher: a plain run needs no MPI. */
	int mpi = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
	if (mpi) {
		MPI_Init(&argc, &argv);
		if (ffdp_dist_create(&r.d, &err)) {
			MPI_Finalize();
			return ffdp_cli_fail(&err);
		}
		r.rank = ffdp_dist_rank(r.d), r.size = ffdp_dist_size(r.d);
		r.s = ffdp_slab_of(c.o.n[2], r.rank, r.size);
		if (r.rank)
			ffdp_log_set_level(FFDP_LOG_QUIET);
	}
#endif
	double t0 = ffdp_now();
	if (r.rank == 0)
		ffdp_log_info("synth: %lldx%lldx%lld at %.3g mm, deformation up to %.3g mm, %d rank%s x %d thread%s",
			      (long long)c.o.n[0], (long long)c.o.n[1], (long long)c.o.n[2], c.o.spacing[0],
			      c.o.amplitude_mm, r.size, r.size == 1 ? "" : "s", ffdp_num_threads(),
			      ffdp_num_threads() == 1 ? "" : "s");
	ffdp_status st = run_synth(&c, &r, &err);
	long peak = ffdp_cli_peak_rss_mb(), peak_max = peak;
#ifdef FFDP_HAVE_MPI
	if (r.d)
		MPI_Reduce(&peak, &peak_max, 1, MPI_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
#endif
	if (st)
		rc = r.rank == 0 ? ffdp_cli_fail(&err) : 1;
	else if (r.rank == 0)
		printf("synth: wrote %s_{fixed,moving}%s%s.nii.gz in %.2f s; peak memory %ld MiB per process\n",
		       c.prefix, c.labels ? ", _{fixed,moving}_labels" : "", c.truth ? ", _true_warp" : "",
		       ffdp_now() - t0, peak_max);
#ifdef FFDP_HAVE_MPI
	if (r.d) {
		ffdp_dist_destroy(r.d);
		MPI_Finalize();
	}
#endif
	return rc;
}

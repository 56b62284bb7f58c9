/* ffdp under mpirun (cli.h): detection, MPI set-up, every rank reading and
 * writing its own planes of the images, and the ranks' fetch traffic
 * gathered for the report.  No rank holds a whole volume: rank 0 holds the
 * QC picture's previews (at most 256 voxels an axis). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#ifdef FFDP_HAVE_MPI
#include <mpi.h>

#include "ffdp/dist.h"
#include "ffdp/pyramid.h"
#endif

/* Launched by mpirun (Open MPI, MPICH/PMI)?  One rank too: it runs the
 * distributed code on one slab. */
static int launched_by_mpirun(void)
{
	static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);
		if (v && atoi(v) >= 1)
			return 1;
	}
	return 0;
}

ffdp_status ffdp_cli_mpi_start(cli_mpi *m, int *argc, char ***argv, ffdp_error *err)
{
	memset(m, 0, sizeof(*m));
	m->size = 1;
	if (!launched_by_mpirun())
		return FFDP_OK;
#ifdef FFDP_HAVE_MPI
	int inited = 0, provided = 0;
	MPI_Initialized(&inited);
	if (!inited && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
		return ffdp_fail(err, FFDP_ERR_BACKEND, "MPI_Init failed");
	m->own_init = !inited;
	MPI_Comm_rank(MPI_COMM_WORLD, &m->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &m->size);
	/* one rank too: the distributed code on one slab (the same result) */
	ffdp_status s = ffdp_dist_create(&m->dist, err);
	if (!s && m->rank > 0)
		ffdp_log_set_level(FFDP_LOG_QUIET); /* rank 0 reports */
	return s;
#else
	(void)argc, (void)argv;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "launched by mpirun, but this ffdp was built without MPI");
#endif
}

void ffdp_cli_mpi_end(cli_mpi *m)
{
#ifdef FFDP_HAVE_MPI
	ffdp_dist_destroy(m->dist);
	m->dist = NULL;
	if (m->own_init)
		MPI_Finalize();
#endif
	(void)m;
}

ffdp_status ffdp_cli_mpi_agree(const cli_mpi *m, ffdp_status s, int *quiet, ffdp_error *err)
{
#ifdef FFDP_HAVE_MPI
	if (!m->dist)
		return s;
	/* ranks that only saw another fail (FFDP_ERR_PEER) do not count */
	int first = s && s != FFDP_ERR_PEER ? m->rank : m->size, any = s != FFDP_OK;
	MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
	MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	if (!any)
		return FFDP_OK;
	if (first == m->size) /* every failure a peer's: rank 0 speaks */
		first = 0;
	*quiet = first != m->rank;
	return s ? s : ffdp_fail(err, FFDP_ERR_PEER, "rank %d could not go on", first);
#else
	(void)m, (void)quiet, (void)err;
	return s;
#endif
}

ffdp_status ffdp_cli_mpi_read(const cli_mpi *m, const char *const *paths, ffdp_volume *const *vols, int n,
			      const char *probe, const char *init, ffdp_mat4 *T, int *quiet, ffdp_error *err)
{
	*quiet = 0;
#ifdef FFDP_HAVE_MPI
	ffdp_status s = FFDP_OK;
	/* rank 0 first: a missing file or unwritable output is said once */
	if (m->rank == 0) {
		s = ffdp_check_writable(probe, err);
		for (int k = 0; k < n && !s; k++) {
			ffdp_grid g;
			s = ffdp_image_read_header(paths[k], &g, NULL, err);
		}
		if (!s && init)
			s = ffdp_affine_read(init, T, err);
	}
	if ((s = ffdp_cli_mpi_agree(m, s, quiet, err)))
		return s;
	MPI_Bcast(T, (int)sizeof(*T), MPI_BYTE, 0, MPI_COMM_WORLD);
	/* every rank its planes, along each image's own z */
	for (int k = 0; k < n && !s; k++) {
		ffdp_grid g;
		ffdp_volume *v = vols[k];
		s = ffdp_image_read_header(paths[k], &g, NULL, err);
		ffdp_slab sl = ffdp_slab_of(s ? 1 : g.n[2], m->rank, m->size);
		if (!s && sl.z1 > sl.z0)
			s = ffdp_image_read_slab(paths[k], sl.z0, sl.z1, 0, v, NULL, err);
		else if (!s && !(v->data = ffdp_alloc(sizeof(float), err)))
			s = FFDP_ERR_NOMEM;
		if (!s)
			v->grid = g; /* the whole image's; the data are the rank's planes */
		s = ffdp_cli_mpi_agree(m, s, quiet, err);
	}
	return s;
#else
	(void)m, (void)paths, (void)vols, (void)n, (void)probe, (void)init, (void)T;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "built without MPI");
#endif
}

ffdp_status ffdp_cli_mpi_solo_result(const cli_mpi *m, ffdp_status s, ffdp_reg_result *r, const ffdp_grid *g,
				      int *quiet, ffdp_error *err)
{
#ifdef FFDP_HAVE_MPI
	int st = (int)s;
	MPI_Bcast(&st, 1, MPI_INT, 0, MPI_COMM_WORLD);
	if (st) {
		*quiet = m->rank != 0; /* rank 0 says why */
		return m->rank ? ffdp_fail(err, (ffdp_status)st, "rank 0 could not register") : s;
	}
	ffdp_reg_result copy = *r;
	MPI_Bcast(&copy, (int)sizeof(copy), MPI_BYTE, 0, MPI_COMM_WORLD);
	if (m->rank) { /* everything but the fields, which are rank 0's planes */
		*r = copy;
		memset(&r->u, 0, sizeof(r->u));
		memset(&r->u_inv, 0, sizeof(r->u_inv));
		r->u.grid = r->u_inv.grid = ffdp_grid_slab(g, 0, 0);
		r->u.ncomp = r->u_inv.ncomp = ffdp_grid_dim(g);
	}
	return FFDP_OK;
#else
	(void)m, (void)r, (void)g, (void)quiet, (void)err;
	return s;
#endif
}

#ifdef FFDP_HAVE_MPI
/* The QC preview of an image held in slabs: at most 256 voxels an axis,
 * gathered on rank 0 (out: rank 0 only). */
static ffdp_status preview(const cli_mpi *m, ffdp_backend *be, const ffdp_grid *g, const float *own,
			   ffdp_volume *out, ffdp_error *err)
{
	int64_t big = g->n[0] > g->n[1] ? g->n[0] : g->n[1];
	big = big > g->n[2] ? big : g->n[2];
	ffdp_grid pg = *g;
	float *part = NULL;
	ffdp_status s = big > 256 ? ffdp_pyramid_level_grid(g, (double)(big + 255) / 256.0, 1, &pg, err) : FFDP_OK;
	ffdp_slab ps = ffdp_slab_of(pg.n[2], m->rank, m->size);
	const int64_t plane = pg.n[0] * pg.n[1];
	if (!s && big > 256) {
		ffdp_dist_image src = {.own = own, .n = {g->n[0], g->n[1], g->n[2]}};
		if (!(part = ffdp_alloc((size_t)((ps.z1 - ps.z0) * plane + 1) * sizeof(float), err)))
			s = FFDP_ERR_NOMEM;
		s = ffdp_dist_agree(m->dist, s, "qc preview", err);
		if (!s)
			s = ffdp_dist_downsample(m->dist, be, &src, g, &pg, part, NULL, err);
	}
	if (!s && m->rank == 0)
		s = ffdp_volume_alloc(out, &pg, err);
	s = ffdp_dist_agree(m->dist, s, "qc preview", err);
	if (!s)
		s = ffdp_dist_gather(m->dist, part ? part : own, plane, pg.n[2], m->rank == 0 ? out->data : NULL, 0, err);
	ffdp_free(part);
	return s;
}
#endif

ffdp_status ffdp_cli_mpi_write_images(const cli_mpi *m, const char *prefix, const ffdp_cli_names *nm,
				      const ffdp_volume *fixed, const ffdp_volume *moving, const ffdp_reg_result *r,
				      ffdp_error *err)
{
#ifdef FFDP_HAVE_MPI
	char path[4096];
	ffdp_backend *be = NULL;
	ffdp_field w = {0};
	ffdp_volume pf = {0}, pw = {0};
	const ffdp_grid *g = &fixed->grid;
	ffdp_slab sl = ffdp_slab_of(g->n[2], m->rank, m->size);
	const int64_t own = sl.z1 - sl.z0;
	float *warped = ffdp_alloc((size_t)(own * g->n[0] * g->n[1] + 1) * sizeof(float), err);
	ffdp_status s = warped ? ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, err) : FFDP_ERR_NOMEM;
#define OUT(suffix) (snprintf(path, sizeof(path), "%s%s", prefix, suffix), path)
	s = ffdp_dist_agree(m->dist, s, "outputs", err);
	if (!s)
		s = ffdp_warp_volume_dist(m->dist, be, moving, g, &r->T, r->has_warp ? &r->u : NULL, FFDP_INTERP_LINEAR,
					  warped, err);
	if (!s)
		s = ffdp_dist_image_write(m->dist, OUT(nm->warped), g, warped, &sl, FFDP_WRITE_FLOAT32, err);
	if (!s && r->has_warp) {
		if (own > 0)
			s = ffdp_warp_to_ants(&r->u, &r->T, &w, err);
		s = ffdp_dist_agree(m->dist, s, "outputs", err);
		if (!s)
			s = ffdp_dist_field_write(m->dist, OUT(nm->warp), g, w.c, &sl, err);
	}
	if (!s && r->has_inverse)
		s = ffdp_dist_field_write(m->dist, OUT(nm->inverse), g, r->u_inv.c, &sl, err);
	if (!s)
		s = preview(m, be, g, fixed->data, &pf, err);
	if (!s)
		s = preview(m, be, g, warped, &pw, err);
	if (!s && m->rank == 0)
		s = ffdp_qc_write_png(OUT(nm->qc), &pf, &pw, FFDP_QC_OVERLAY, err);
	s = ffdp_dist_agree(m->dist, s, "outputs", err);
#undef OUT
	ffdp_field_free(&w);
	ffdp_volume_free(&pf), ffdp_volume_free(&pw);
	ffdp_free(warped);
	ffdp_backend_close(be);
	return s;
#else
	(void)m, (void)prefix, (void)nm, (void)fixed, (void)moving, (void)r;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "built without MPI");
#endif
}

int ffdp_cli_mpi_local_rank(const cli_mpi *m)
{
#ifdef FFDP_HAVE_MPI
	if (m->dist)
		return ffdp_dist_local_rank(m->dist);
#endif
	(void)m;
	return 0;
}

const char *ffdp_cli_mpi_transport(const cli_mpi *m)
{
#ifdef FFDP_HAVE_MPI
	if (m->dist)
		return ffdp_dist_transport(m->dist);
#endif
	(void)m;
	return "none";
}

void ffdp_cli_mpi_traffic(const cli_mpi *m, const ffdp_reg_result *r, uint64_t *all)
{
	uint64_t mine[FFDP_CLI_TRAFFIC * FFDP_MAX_STAGES];
	const int n = FFDP_CLI_TRAFFIC * r->nstages;
	for (int k = 0; k < r->nstages; k++) {
		uint64_t *e = mine + FFDP_CLI_TRAFFIC * k;
		e[0] = r->stages[k].fetch_recv, e[1] = r->stages[k].fetch_sent, e[2] = r->stages[k].fetch_ring;
	}
	if (!m->dist) {
		memcpy(all, mine, sizeof(uint64_t) * (size_t)n);
		return;
	}
#ifdef FFDP_HAVE_MPI
	MPI_Gather(mine, n, MPI_UINT64_T, all, n, MPI_UINT64_T, 0, MPI_COMM_WORLD);
#endif
}

/* ffdp under mpirun (cli.h): detection, MPI set-up, rank 0's inputs shared
 * with every rank, and the ranks' fetch traffic gathered for the report. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#ifdef FFDP_HAVE_MPI
#include <mpi.h>

#include "ffdp/dist.h"
#endif

/* Launched by mpirun with more than one rank (Open MPI, MPICH/PMI)? */
static int launched_by_mpirun(void)
{
	static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);
		if (v && atoi(v) > 1)
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

#ifdef FFDP_HAVE_MPI
/* bytes from rank 0, in messages under 1 GiB (grids, T). */
static void bcast_bytes(void *p, size_t bytes)
{
	char *c = p;
	const size_t chunk = (size_t)1 << 30;
	for (size_t o = 0; o < bytes; o += chunk)
		MPI_Bcast(c + o, (int)(bytes - o < chunk ? bytes - o : chunk), MPI_BYTE, 0, MPI_COMM_WORLD);
}
#endif

ffdp_status ffdp_cli_mpi_share(const cli_mpi *m, ffdp_status s, ffdp_error *err, ffdp_volume *const *vols,
			       int nvol, ffdp_mat4 *T)
{
	if (!m->dist)
		return s;
#ifdef FFDP_HAVE_MPI
	int st = (int)s;
	MPI_Bcast(&st, 1, MPI_INT, 0, MPI_COMM_WORLD);
	if (st) /* rank 0 prints the reason */
		return m->rank ? ffdp_fail(err, (ffdp_status)st, "rank 0 could not read the inputs") : s;
	/* grids to all, then each rank's planes only (rank 0 keeps the whole
	 * volumes, for the outputs; its planes come first) */
	for (int k = 0; k < nvol && !s; k++) {
		ffdp_volume *v = vols[k];
		bcast_bytes(&v->grid, sizeof(v->grid));
		ffdp_slab sl = ffdp_slab_of(v->grid.n[2], m->rank, m->size);
		int64_t plane = v->grid.n[0] * v->grid.n[1];
		if (m->rank && !(v->data = ffdp_alloc((size_t)((sl.z1 - sl.z0) * plane + 1) * sizeof(float), err)))
			s = FFDP_ERR_NOMEM;
		s = ffdp_dist_agree(m->dist, s, "scatter", err);
		if (!s)
			s = ffdp_dist_scatter(m->dist, v->data, plane, v->grid.n[2], v->data, 0, err);
	}
	bcast_bytes(T, sizeof(*T));
	return s;
#else
	(void)err, (void)vols, (void)nvol, (void)T;
	return s;
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

/* Moving planes between ranks (dist_internal.h): MPI on host memory,
 * staging through host buffers for another backend's memory when its
 * devices cannot talk directly (several ranks on one GPU), NCCL between
 * GPUs; and the backend choice that sets which (ffdp_dist_use_backend). */
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"

/* MPI counts are int: larger transfers go as several messages, which MPI
 * delivers in order between a pair of ranks on one tag. */
#define XFER_CHUNK ((int64_t)1 << 30)

float *dist_alloc(ffdp_backend *be, int64_t floats, ffdp_error *err, const char *what)
{
	size_t bytes = (size_t)(floats > 0 ? floats : 1) * sizeof(float);
	float *p = be ? ffdp_buf_alloc(be, bytes, err) : calloc(1, bytes);
	if (!p && !be)
		ffdp_fail(err, FFDP_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, bytes);
	return p;
}

void dist_free(ffdp_backend *be, void *p)
{
	if (be)
		ffdp_buf_free(be, p);
	else
		free(p);
}

ffdp_status dist_copy(ffdp_backend *be, float *dst, const float *src, int64_t floats, ffdp_error *err)
{
	if (floats <= 0 || dst == src)
		return FFDP_OK;
	if (be)
		return ffdp_buf_copy(be, dst, src, (size_t)floats * sizeof(float), err);
	memcpy(dst, src, (size_t)floats * sizeof(float));
	return FFDP_OK;
}

/* Kept only for the backend given to ffdp_dist_use_backend, whose device
 * memory it is (ffdp_dist_release frees them before it closes). */
static int keeps(const ffdp_dist *d, ffdp_backend *be)
{
	return be && be == d->be && !ffdp_backend_host_memory(be);
}

float *dist_scratch(ffdp_dist *d, ffdp_backend *be, int64_t floats, ffdp_error *err, const char *what)
{
	floats = floats > 0 ? floats : 1;
	if (keeps(d, be)) {
		int best = -1;
		for (int k = 0; k < DIST_SCRATCH; k++)
			if (d->scratch[k].p && d->scratch[k].n >= floats && d->scratch[k].n <= 2 * floats &&
			    (best < 0 || d->scratch[k].n < d->scratch[best].n))
				best = k;
		if (best >= 0) {
			float *p = d->scratch[best].p;
			d->scratch[best].p = NULL;
			return p;
		}
	}
	return dist_alloc(be, floats, err, what);
}

void dist_scratch_put(ffdp_dist *d, ffdp_backend *be, float *p, int64_t floats)
{
	if (!p)
		return;
	floats = floats > 0 ? floats : 1;
	if (keeps(d, be)) {
		int slot = -1;
		for (int k = 0; k < DIST_SCRATCH && slot < 0; k++)
			if (!d->scratch[k].p)
				slot = k;
		if (slot < 0) { /* full: the smallest goes */
			slot = 0;
			for (int k = 1; k < DIST_SCRATCH; k++)
				if (d->scratch[k].n < d->scratch[slot].n)
					slot = k;
			dist_free(be, d->scratch[slot].p);
		}
		d->scratch[slot] = (dist_buf){p, floats};
		return;
	}
	dist_free(be, p);
}

void ffdp_dist_release(ffdp_dist *d)
{
	for (int k = 0; k < DIST_SCRATCH; k++) {
		if (d->scratch[k].p)
			dist_free(d->be, d->scratch[k].p);
		d->scratch[k] = (dist_buf){NULL, 0};
	}
}

int dist_host(const ffdp_dist *d, ffdp_backend *be)
{
	/* host memory goes by MPI even where GPUs use NCCL (outputs, previews) */
	return !be || (ffdp_backend_host_memory(be) && d->xport != DIST_XPORT_STAGED);
}

ffdp_status dist_check_backend(const ffdp_dist *d, ffdp_backend *be, const char *what, ffdp_error *err)
{
	if (!be || ffdp_backend_host_memory(be) || d->be == be)
		return FFDP_OK;
	return ffdp_fail(err, FFDP_ERR_ARG, "%s: the %s backend was not given to ffdp_dist_use_backend", what,
			 ffdp_backend_name(be));
}

void dist_xfer_init(dist_xfer *x, ffdp_dist *d, ffdp_backend *be)
{
	memset(x, 0, sizeof(*x));
	x->d = d, x->be = be;
}

static void xfer_add(dist_xfer *x, float *p, int64_t count, int peer, int tag, int recv)
{
	if (count <= 0 || x->nomem)
		return;
	if (x->n == x->cap) {
		int cap = x->cap ? 2 * x->cap : 16;
		dist_xop *op = realloc(x->op, (size_t)cap * sizeof(*op));
		if (!op) {
			x->nomem = 1;
			return;
		}
		x->op = op, x->cap = cap;
	}
	x->op[x->n++] = (dist_xop){p, count, peer, tag, recv};
}

void dist_xfer_send(dist_xfer *x, const float *p, int64_t count, int peer, int tag)
{
	xfer_add(x, (float *)p, count, peer, tag, 0);
}

void dist_xfer_recv(dist_xfer *x, float *p, int64_t count, int peer, int tag)
{
	xfer_add(x, p, count, peer, tag, 1);
}

/* MPI on host pointers (hp[i], or the ops' own). */
static ffdp_status xfer_mpi(dist_xfer *x, float *const *hp, ffdp_error *err)
{
	int64_t nmsg = 0;
	for (int i = 0; i < x->n; i++)
		nmsg += (x->op[i].count + XFER_CHUNK - 1) / XFER_CHUNK;
	MPI_Request *req = malloc((size_t)(nmsg + 1) * sizeof(*req));
	if (!req)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "dist transfer: cannot allocate %lld requests", (long long)nmsg);
	int nreq = 0;
	for (int i = 0; i < x->n; i++) {
		const dist_xop *o = &x->op[i];
		float *p = hp ? hp[i] : o->p;
		for (int64_t at = 0; at < o->count; at += XFER_CHUNK) {
			int c = (int)(o->count - at < XFER_CHUNK ? o->count - at : XFER_CHUNK);
			if (o->recv)
				MPI_Irecv(p + at, c, MPI_FLOAT, o->peer, o->tag, x->d->comm, &req[nreq++]);
			else
				MPI_Isend(p + at, c, MPI_FLOAT, o->peer, o->tag, x->d->comm, &req[nreq++]);
		}
	}
	int rc = MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE);
	free(req);
	return rc == MPI_SUCCESS ? FFDP_OK : ffdp_fail(err, FFDP_ERR_BACKEND, "dist transfer: MPI_Waitall failed (%d)", rc);
}

/* Through host buffers: sends downloaded, receives uploaded after. */
static ffdp_status xfer_staged(dist_xfer *x, ffdp_error *err)
{
	float **hp = calloc((size_t)x->n + 1, sizeof(*hp));
	ffdp_status s = hp ? FFDP_OK : ffdp_fail(err, FFDP_ERR_NOMEM, "dist transfer: no memory");
	for (int i = 0; i < x->n && !s; i++) {
		const dist_xop *o = &x->op[i];
		size_t bytes = (size_t)o->count * sizeof(float);
		if (!(hp[i] = malloc(bytes)))
			s = ffdp_fail(err, FFDP_ERR_NOMEM, "dist transfer: cannot stage %zu bytes", bytes);
		else if (!o->recv)
			s = ffdp_buf_download(x->be, hp[i], o->p, bytes, err);
	}
	/* every rank must take part, or its peers wait for ever */
	s = ffdp_dist_agree(x->d, s, "dist transfer", err);
	if (!s)
		s = xfer_mpi(x, hp, err);
	for (int i = 0; i < x->n && !s; i++)
		if (x->op[i].recv)
			s = ffdp_buf_upload(x->be, x->op[i].p, hp[i], (size_t)x->op[i].count * sizeof(float), err);
	for (int i = 0; hp && i < x->n; i++)
		free(hp[i]);
	free(hp);
	return s;
}

ffdp_status dist_xfer_run(dist_xfer *x, ffdp_error *err)
{
	ffdp_status s;
	if (x->nomem)
		s = ffdp_fail(err, FFDP_ERR_NOMEM, "dist transfer: cannot list the messages");
	else if (dist_host(x->d, x->be))
		s = xfer_mpi(x, NULL, err);
#ifdef FFDP_HAVE_NCCL
	else if (x->d->xport == DIST_XPORT_NCCL)
		s = dist_nccl_run(x->d, x->op, x->n, err);
#endif
	else
		s = xfer_staged(x, err);
	free(x->op);
	x->op = NULL, x->n = x->cap = 0;
	return s;
}

ffdp_status ffdp_dist_rank_total(ffdp_dist *d, const double *mine, int k, double *total, ffdp_error *err)
{
	double *all = malloc((size_t)d->size * (size_t)k * sizeof(double) + 1);
	int ok = all != NULL;
	MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, d->comm);
	if (!ok) {
		free(all);
		return ffdp_fail(err, FFDP_ERR_NOMEM, "dist reduce: cannot gather %d sums from %d ranks", k, d->size);
	}
	int rc = MPI_Allgather(mine, k, MPI_DOUBLE, all, k, MPI_DOUBLE, d->comm);
	for (int j = 0; j < k; j++) {
		double t = all[j];
		for (int q = 1; q < d->size; q++)
			t += all[(size_t)q * k + j];
		total[j] = t;
	}
	free(all);
	return rc == MPI_SUCCESS ? FFDP_OK : ffdp_fail(err, FFDP_ERR_BACKEND, "dist reduce: MPI_Allgather failed (%d)", rc);
}

ffdp_status ffdp_dist_use_backend(ffdp_dist *d, ffdp_backend *be, unsigned flags, ffdp_error *err)
{
	const int host = ffdp_backend_host_memory(be);
	ffdp_status s = FFDP_OK;
	ffdp_dist_release(d); /* the former backend's scratch */
#ifdef FFDP_HAVE_NCCL
	if (d->nccl)
		dist_nccl_free(d);
#endif
	d->be = be;
	d->exact = host && !(flags & FFDP_DIST_PORTABLE);
	d->xport = host && !(flags & FFDP_DIST_STAGED) ? DIST_XPORT_MPI : DIST_XPORT_STAGED;
#ifdef FFDP_HAVE_NCCL
	if (!host && !(flags & FFDP_DIST_STAGED) && !dist_gpu_shared(d)) {
		s = dist_nccl_init(d, err);
		if (!s)
			d->xport = DIST_XPORT_NCCL;
	}
#endif
	return ffdp_dist_agree(d, s, "dist backend", err);
}

int ffdp_dist_exact_sums(const ffdp_dist *d, ffdp_backend *be)
{
	return dist_exact(d, be);
}

const char *ffdp_dist_transport(const ffdp_dist *d)
{
	static const char *const name[] = {"mpi", "staged", "nccl"};
	return name[d->xport];
}

int ffdp_dist_local_rank(const ffdp_dist *d)
{
	MPI_Comm node;
	int r = 0;
	if (MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node) != MPI_SUCCESS)
		return d->rank;
	MPI_Comm_rank(node, &r);
	MPI_Comm_free(&node);
	return r;
}

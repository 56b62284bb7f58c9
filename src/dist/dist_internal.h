/* The distribution context, shared by the files of src/dist. */
#ifndef FFDP_DIST_INTERNAL_H
#define FFDP_DIST_INTERNAL_H

#include <mpi.h>

#include "ffdp/dist.h"

/* How planes in a backend's memory move between ranks (xfer.c). */
typedef enum dist_xport {
	DIST_XPORT_MPI = 0,    /* host memory, MPI */
	DIST_XPORT_STAGED = 1, /* backend memory, through host buffers and MPI */
	DIST_XPORT_NCCL = 2,   /* device memory, NCCL */
} dist_xport;

/* Scratch kept between calls (device memory: an allocation there costs more
 * than a whole op at 1 mm). */
enum { DIST_SCRATCH = 12 };
typedef struct dist_buf {
	float *p;
	int64_t n; /* floats */
} dist_buf;

struct ffdp_dist {
	MPI_Comm comm;
	int rank, size;
	double ring_frac; /* moving access: ring above this share of the planes */
	/* ffdp_dist_use_backend: */
	ffdp_backend *be; /* NULL: host memory (a CPU backend) */
	int exact;        /* sums plane by plane in global order (host-memory ops) */
	dist_xport xport;
	void *nccl;       /* ncclComm_t */
	dist_buf scratch[DIST_SCRATCH]; /* free buffers of be (device backends) */
};

/* A batch of transfers between this rank and others, run together (no
 * order of ranks can deadlock).  Pointers are in be's memory (NULL: host
 * memory, always MPI).  Between one pair of ranks, messages with the same
 * tag arrive in the order they were added.  A failure while adding is
 * reported by run; run frees the batch either way. */
typedef struct dist_xop {
	float *p;
	int64_t count; /* floats */
	int peer, tag, recv;
} dist_xop;

typedef struct dist_xfer {
	ffdp_dist *d;
	ffdp_backend *be;
	dist_xop *op;
	int n, cap, nomem;
} dist_xfer;

void dist_xfer_init(dist_xfer *x, ffdp_dist *d, ffdp_backend *be);
void dist_xfer_send(dist_xfer *x, const float *p, int64_t count, int peer, int tag);
void dist_xfer_recv(dist_xfer *x, float *p, int64_t count, int peer, int tag);
ffdp_status dist_xfer_run(dist_xfer *x, ffdp_error *err);

/* Sums plane by plane in global order, on host data (dist.h). */
static inline int dist_exact(const ffdp_dist *d, ffdp_backend *be)
{
	return d->exact && (!be || ffdp_backend_host_memory(be));
}

/* MPI moves be's buffers directly: host memory, not forced to stage. */
int dist_host(const ffdp_dist *d, ffdp_backend *be);
/* The backend may be used with d (ffdp_dist_use_backend was called for a
 * device backend); an error naming what otherwise. */
ffdp_status dist_check_backend(const ffdp_dist *d, ffdp_backend *be, const char *what, ffdp_error *err);

/* Halo exchange of a haloed slab in be's memory (ffdp_dist_halo_exchange;
 * be NULL: host).  Device memory takes fill 0 only. */
ffdp_status dist_halo_exchange_be(ffdp_dist *d, ffdp_backend *be, float *buf, int64_t plane, const ffdp_slab *s,
				  int64_t h, float fill, ffdp_error *err);

/* Scratch of at least floats floats in be's memory, not zeroed: a kept
 * buffer when one fits (device backends), else a new one; give it back
 * with dist_scratch_put (kept for the next call, or freed). */
float *dist_scratch(ffdp_dist *d, ffdp_backend *be, int64_t floats, ffdp_error *err, const char *what);
void dist_scratch_put(ffdp_dist *d, ffdp_backend *be, float *p, int64_t floats);

/* Backend memory helpers: NULL be is host memory (malloc / memcpy). */
float *dist_alloc(ffdp_backend *be, int64_t floats, ffdp_error *err, const char *what);
void dist_free(ffdp_backend *be, void *p);
ffdp_status dist_copy(ffdp_backend *be, float *dst, const float *src, int64_t floats, ffdp_error *err);

#ifdef FFDP_HAVE_NCCL
ffdp_status dist_nccl_init(ffdp_dist *d, ffdp_error *err);
void dist_nccl_free(ffdp_dist *d);
ffdp_status dist_nccl_run(ffdp_dist *d, const dist_xop *op, int n, ffdp_error *err);
/* 1 when some two ranks of the job use the same GPU.  Collective. */
int dist_gpu_shared(ffdp_dist *d);
#endif

#endif

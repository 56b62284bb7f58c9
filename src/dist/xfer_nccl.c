/* NCCL between the ranks' GPUs (dist_internal.h).  Built only with CUDA
 * and NCCL.  Every rank must have its own device (NCCL refuses two ranks on
 * one): dist_gpu_shared decides beforehand, and the staged transport
 * serves jobs that share GPUs. */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"

int dist_gpu_shared(ffdp_dist *d)
{
	/* host name and PCI bus id of every rank's current device */
	enum { ID = 64 + MPI_MAX_PROCESSOR_NAME };
	char mine[ID], *all = malloc((size_t)d->size * ID);
	int dev = 0, len = 0, shared = 0;
	memset(mine, 0, sizeof(mine));
	MPI_Get_processor_name(mine, &len);
	if (cudaGetDevice(&dev) != cudaSuccess ||
	    cudaDeviceGetPCIBusId(mine + MPI_MAX_PROCESSOR_NAME, 64, dev) != cudaSuccess)
		shared = 1; /* unknown: the safe transport */
	int ok = all != NULL;
	MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, d->comm);
	if (!ok) {
		free(all);
		return 1;
	}
	MPI_Allgather(mine, ID, MPI_CHAR, all, ID, MPI_CHAR, d->comm);
	for (int p = 0; p < d->size && !shared; p++)
		for (int q = p + 1; q < d->size; q++)
			if (!memcmp(all + (size_t)p * ID, all + (size_t)q * ID, ID))
				shared = 1;
	free(all);
	MPI_Allreduce(MPI_IN_PLACE, &shared, 1, MPI_INT, MPI_MAX, d->comm);
	return shared;
}

ffdp_status dist_nccl_init(ffdp_dist *d, ffdp_error *err)
{
	ncclUniqueId id;
	ncclComm_t comm = NULL;
	int ok = 1;
	if (d->rank == 0 && ncclGetUniqueId(&id) != ncclSuccess)
		ok = 0;
	MPI_Bcast(&ok, 1, MPI_INT, 0, d->comm);
	if (!ok)
		return ffdp_fail(err, FFDP_ERR_BACKEND, "NCCL: no unique id");
	MPI_Bcast(&id, (int)sizeof(id), MPI_BYTE, 0, d->comm);
	ncclResult_t r = ncclCommInitRank(&comm, d->size, id, d->rank);
	if (r != ncclSuccess)
		return ffdp_fail(err, FFDP_ERR_BACKEND, "NCCL: communicator of %d ranks: %s", d->size,
				 ncclGetErrorString(r));
	d->nccl = comm;
	return FFDP_OK;
}

void dist_nccl_free(ffdp_dist *d)
{
	if (d->nccl)
		ncclCommDestroy((ncclComm_t)d->nccl);
	d->nccl = NULL;
}

ffdp_status dist_nccl_run(ffdp_dist *d, const dist_xop *op, int n, ffdp_error *err)
{
	/* the ops run on the legacy default stream, which orders this one */
	cudaStream_t st = 0;
	ncclResult_t r = ncclGroupStart();
	for (int i = 0; i < n && r == ncclSuccess; i++)
		r = op[i].recv ? ncclRecv(op[i].p, (size_t)op[i].count, ncclFloat, op[i].peer, (ncclComm_t)d->nccl, st)
			       : ncclSend(op[i].p, (size_t)op[i].count, ncclFloat, op[i].peer, (ncclComm_t)d->nccl, st);
	ncclResult_t g = ncclGroupEnd();
	if (r == ncclSuccess)
		r = g;
	if (r != ncclSuccess)
		return ffdp_fail(err, FFDP_ERR_BACKEND, "NCCL send/recv: %s", ncclGetErrorString(r));
	cudaError_t e = cudaStreamSynchronize(st);
	if (e != cudaSuccess)
		return ffdp_fail(err, FFDP_ERR_BACKEND, "NCCL send/recv: %s", cudaGetErrorString(e));
	return FFDP_OK;
}

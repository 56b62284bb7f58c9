/* The distribution context, shared by the files of src/dist. */
#ifndef FFDP_DIST_INTERNAL_H
#define FFDP_DIST_INTERNAL_H

#include <mpi.h>

#include "ffdp/dist.h"

struct ffdp_dist {
	MPI_Comm comm;
	int rank, size;
	double ring_frac; /* moving access: ring above this share of the planes */
};

#endif

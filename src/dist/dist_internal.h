/* The distribution context, shared by the files of src/dist. */
#ifndef FFDP_DIST_INTERNAL_H
#define FFDP_DIST_INTERNAL_H

#include <mpi.h>

#include "ffdp/dist.h"

struct ffdp_dist {
	MPI_Comm comm;
	int rank, size;
};

/* Any rank's failure fails every rank, so that none is left waiting in an
 * exchange: returns s, or an error naming `what` when another rank failed. */
ffdp_status ffdp_dist_agree(ffdp_dist *d, ffdp_status s, const char *what, ffdp_error *err);

#endif

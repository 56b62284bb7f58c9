#include <stdio.h>

#include "ffdp/ffdp.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef FFDP_VERSION_STRING
#define FFDP_VERSION_STRING "0.0.0"
#endif

const char *ffdp_version(void)
{
	return FFDP_VERSION_STRING;
}

int ffdp_num_threads(void)
{
#ifdef _OPENMP
	return omp_get_max_threads();
#else
	return 1;
#endif
}

void ffdp_build_info(char *buf, size_t len)
{
#ifdef FFDP_HAVE_CUDA
	int ndev = ffdp_cuda_device_count();
	char cuda[64];
	snprintf(cuda, sizeof(cuda), "yes (%d device%s visible)", ndev, ndev == 1 ? "" : "s");
#else
	const char *cuda = "no (built without nvcc)";
#endif
#ifdef FFDP_HAVE_MPI
	const char *mpi = "yes";
#else
	const char *mpi = "no";
#endif
	snprintf(buf, len, "ffdp %s\n  threads: %d (OpenMP%s)\n  cuda:    %s\n  mpi:     %s\n", ffdp_version(),
		 ffdp_num_threads(),
#ifdef _OPENMP
		 "",
#else
		 " off",
#endif
		 cuda, mpi);
}

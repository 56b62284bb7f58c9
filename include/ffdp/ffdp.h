/* libffdp: image registration from a 1 mm brain to gigavoxel microscopy. */
#ifndef FFDP_FFDP_H
#define FFDP_FFDP_H

#include "ffdp/chain.h"
#include "ffdp/eval.h"
#include "ffdp/grid.h"
#include "ffdp/io.h"
#include "ffdp/log.h"
#include "ffdp/mat4.h"
#include "ffdp/ops.h"
#include "ffdp/phantom.h"
#include "ffdp/progress.h"
#include "ffdp/pyramid.h"
#include "ffdp/qc.h"
#include "ffdp/register.h"
#include "ffdp/status.h"
#include "ffdp/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "0.1.0" */
const char *ffdp_version(void);
/* What this build has: threads, CUDA (and devices seen), MPI. Caller's buffer. */
void ffdp_build_info(char *buf, size_t len);
/* OpenMP threads in use (honours OMP_NUM_THREADS). */
int ffdp_num_threads(void);
/* CUDA devices visible, 0 when none or not compiled in. */
int ffdp_cuda_device_count(void);
/* GPU memory in use on the current CUDA device (total - free, every
 * process's), for benchmarks; FFDP_ERR_UNSUPPORTED without CUDA. */
ffdp_status ffdp_cuda_mem_used(size_t *used, ffdp_error *err);

#ifdef __cplusplus
}
#endif
#endif

/* Helpers shared by the CPU losses: reductions that do not depend on the
 * thread count, and the denominator of a mean loss. */
#ifndef FFDP_CPU_LOSSUTIL_H
#define FFDP_CPU_LOSSUTIL_H

#include <stdint.h>

#include "cpu_ops.h"

/* Sums over n voxels are split into at most this many fixed blocks; each
 * block is summed serially and the partials in order, so a result is the
 * same bits for any number of threads. */
#define FFDP_CPU_MAX_BLOCKS 4096

/* Block length for n voxels (at least 65536 so partials stay few). */
int64_t ffdp_cpu_block_len(int64_t n);

/* Sum of x over n voxels, reproducible (see above). */
double ffdp_cpu_sum_f32(const float *x, int64_t n);

/* Reproducible total of row sums part[z * ny + y]: each plane's rows in
 * order, then the planes in order; zsum (optional) gets the planes'. */
double ffdp_cpu_plane_sums(const double *part, int64_t ny, int64_t nz, double *zsum);

/* a->denom when > 0; otherwise the mask sum, or the voxel count without a
 * mask.  A mask that sums to <= 0 with no denom is an error: the mean is
 * undefined. */
ffdp_status ffdp_cpu_loss_denom(const ffdp_loss_args *a, const char *what, double *denom, ffdp_error *err);

#endif

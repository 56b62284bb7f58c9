/* Multi-scale pyramid: the grid of each level and resampling of images and
 * displacement fields between levels.
 *
 * Built from the public ops (ffdp_op_smooth, ffdp_op_sample), so the code is
 * backend-neutral.  Voxel data live in the backend's memory: the source's
 * planes are be's buffers, and the result's planes are allocated with
 * ffdp_buf_alloc(be) and must be released with ffdp_buf_free(be, plane)
 * (for the CPU backend, whose buffers are host memory, ffdp_volume_free /
 * ffdp_field_free do the same).  These run once per level at setup, not per
 * iteration, so ffdp_pyramid_downsample may hold one blurred copy of its
 * source.
 */
#ifndef FFDP_PYRAMID_H
#define FFDP_PYRAMID_H

#include <stdint.h>

#include "ffdp/grid.h"
#include "ffdp/ops.h"
#include "ffdp/status.h"
#include "ffdp/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The grid of a level shrunk by shrink >= 1, per axis:
 *     n' = max(round(n / shrink), min(min_size, n))   (an axis with n = 1 stays 1)
 *     spacing' = spacing * n / n'                     (same physical extent, as ITK)
 *     origin' = origin + D diag(spacing) (n / n' - 1) / 2
 * so that the outer corners of the voxel boxes coincide; D is unchanged. */
ffdp_status ffdp_pyramid_level_grid(const ffdp_grid *g, double shrink, int64_t min_size, ffdp_grid *out,
				    ffdp_error *err);

/* W = (src phys->index)(dst index->phys), 3x4 row-major: a dst voxel's
 * continuous index in src (the sampler's W for resampling). */
void ffdp_pyramid_map(const ffdp_grid *src, const ffdp_grid *dst, double W[12]);

/* The anti-aliasing blur of downsampling src to dst (below); 0 when no
 * axis shrinks (then so has no sigma). */
int ffdp_pyramid_blur(const ffdp_grid *src, const ffdp_grid *dst, ffdp_smooth_opts *so);

/* Resample src onto dst_grid (a level of src's grid): a Gaussian blur of
 * sigma = 0.5 n / n' source voxels on each axis that shrinks (truncated at
 * 2 sigma, renormalised at the faces), then linear sampling with border
 * padding at the dst voxel centres.  dst receives a new volume (its data a
 * buffer of be); it is zeroed on failure.  src is not modified. */
ffdp_status ffdp_pyramid_downsample(ffdp_backend *be, const ffdp_volume *src, const ffdp_grid *dst_grid,
				    ffdp_volume *dst, ffdp_error *err);

/* One plane on src_grid (a field component, a moment) resampled onto
 * dst_grid (finer or coarser) into dst (n of dst_grid voxels, a buffer of
 * be), linear with border padding. */
ffdp_status ffdp_plane_resample(ffdp_backend *be, const float *src, const ffdp_grid *src_grid, float *dst,
				const ffdp_grid *dst_grid, ffdp_error *err);

/* Resample a displacement field onto dst_grid (finer or coarser), component
 * by component, linear with border padding.  Values are mm and need no
 * rescaling.  dst receives a new field (planes: buffers of be); zeroed on failure. */
ffdp_status ffdp_field_resample(ffdp_backend *be, const ffdp_field *src, const ffdp_grid *dst_grid,
				ffdp_field *dst, ffdp_error *err);

#ifdef __cplusplus
}
#endif
#endif

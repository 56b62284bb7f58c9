/* TEMPORARY local stand-in (not committed): the smooth helper writes the real one. */
#ifndef FFDP_PYRAMID_H
#define FFDP_PYRAMID_H
#include "ffdp/ops.h"
#include "ffdp/volume.h"
ffdp_status ffdp_pyramid_level_grid(const ffdp_grid *g, double shrink, int64_t min_size, ffdp_grid *out, ffdp_error *err);
ffdp_status ffdp_pyramid_downsample(ffdp_backend *be, const ffdp_volume *src, const ffdp_grid *dst_grid, ffdp_volume *dst, ffdp_error *err);
ffdp_status ffdp_field_resample(ffdp_backend *be, const ffdp_field *src, const ffdp_grid *dst_grid, ffdp_field *dst, ffdp_error *err);
#endif

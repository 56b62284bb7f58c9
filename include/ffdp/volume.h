/* Images and displacement fields: a grid plus owned float32 storage.
 *
 * ffdp_volume: one scalar per voxel.
 * ffdp_field:  a displacement in LPS mm, structure of arrays (one plane per
 *              component), on its grid.  ncomp = ffdp_grid_dim(grid): a 2-D
 *              field has two components and c[2] == NULL.
 * Both own their data (allocated with ffdp_alloc, released by _free); free
 * on a zeroed struct is a no-op, so "= {0}" then free is always safe.
 */
#ifndef FFDP_VOLUME_H
#define FFDP_VOLUME_H

#include <stddef.h>
#include <stdint.h>

#include "ffdp/grid.h"
#include "ffdp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ffdp_volume {
	ffdp_grid grid;
	float *data;
} ffdp_volume;

typedef struct ffdp_field {
	ffdp_grid grid;
	int ncomp;
	float *c[3];
} ffdp_field;

/* 64-byte aligned, zero-filled allocation; NULL (and err set) on failure.
 * Blocks of 64 KiB or more start at a hashed multiple of 64 B within a
 * page (the planes of a field then fall in different L1 sets), so a block
 * takes up to FFDP_ALLOC_PAD bytes beyond its size rounded to 64. */
#define FFDP_ALLOC_PAD (4096 + 64)
void *ffdp_alloc(size_t bytes, ffdp_error *err);
void ffdp_free(void *p);

ffdp_status ffdp_volume_alloc(ffdp_volume *v, const ffdp_grid *g, ffdp_error *err);
void ffdp_volume_free(ffdp_volume *v);
ffdp_status ffdp_volume_copy(ffdp_volume *dst, const ffdp_volume *src, ffdp_error *err);
/* min and max over all voxels; NaN-free input assumed. */
void ffdp_volume_range(const ffdp_volume *v, float *lo, float *hi);

ffdp_status ffdp_field_alloc(ffdp_field *u, const ffdp_grid *g, ffdp_error *err);
/* The same with ncomp components whatever the grid's shape (a one-plane
 * slab of a 3-D field keeps its three). */
ffdp_status ffdp_field_alloc_comps(ffdp_field *u, const ffdp_grid *g, int ncomp, ffdp_error *err);
void ffdp_field_free(ffdp_field *u);

#ifdef __cplusplus
}
#endif
#endif

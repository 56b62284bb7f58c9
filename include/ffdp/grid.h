/* Voxel grid geometry in the ITK/ANTs convention.
 *
 * Physical space is LPS millimetres.  For a voxel index i = (x, y, z),
 *     p = origin + D * diag(spacing) * i,
 * where column j of D (dir[3*r + j], row r) is the LPS direction of index
 * axis j.  Voxel data are stored x fastest: index = (z*ny + y)*nx + x, with
 * 64-bit indices.  nz == 1 is a 2-D image: it is registered in the plane
 * spanned by the first two axes (see ffdp_grid_dim).
 */
#ifndef FFDP_GRID_H
#define FFDP_GRID_H

#include <stdint.h>

#include "ffdp/mat4.h"
#include "ffdp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ffdp_grid {
	int64_t n[3];      /* nx, ny, nz (nz = 1 for 2-D) */
	double spacing[3]; /* mm, > 0 */
	double origin[3];  /* LPS mm of voxel (0, 0, 0) */
	double dir[9];     /* row-major direction cosines, columns = axes */
} ffdp_grid;

/* Axis-aligned grid (D = identity, origin 0). */
ffdp_grid ffdp_grid_make(int64_t nx, int64_t ny, int64_t nz, double sx, double sy, double sz);
int64_t ffdp_grid_voxels(const ffdp_grid *g);
/* 2 when nz == 1, else 3. */
int ffdp_grid_dim(const ffdp_grid *g);
/* Sizes positive, spacing positive and finite, D orthonormal (1e-4). */
ffdp_status ffdp_grid_check(const ffdp_grid *g, ffdp_error *err);
/* Same size, and geometry equal within tol (mm for origin, relative for the rest). */
int ffdp_grid_same(const ffdp_grid *a, const ffdp_grid *b, double tol);

/* continuous index -> LPS mm, and its inverse. */
ffdp_mat4 ffdp_grid_index_to_phys(const ffdp_grid *g);
ffdp_mat4 ffdp_grid_phys_to_index(const ffdp_grid *g);
void ffdp_grid_point(const ffdp_grid *g, const double idx[3], double p[3]);
/* Planes [z0, z1) of g as a grid of their own: nz = z1 - z0 and the
 * origin at g's plane z0, so slab index (i, j, k) lies where g's index
 * (i, j, k + z0) does (slab reading, distributed results). */
ffdp_grid ffdp_grid_slab(const ffdp_grid *g, int64_t z0, int64_t z1);
/* Physical centre of the voxel box (the centre of the image). */
void ffdp_grid_center(const ffdp_grid *g, double c[3]);

/* Three-letter orientation code: letter j names the anatomical direction
 * index axis j points towards, as nibabel's axis codes do ("LPS" for D = I,
 * "RAS" for a NIfTI identity affine).  ITK's SpatialOrientation names the
 * opposite ends ("RAI" for D = I).  out must hold 4 bytes. */
void ffdp_grid_orientation(const ffdp_grid *g, char out[4]);

#ifdef __cplusplus
}
#endif
#endif

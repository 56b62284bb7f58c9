/* Truncated box sums by running sums, for the streaming window ops (LNCC).
 *
 * A window of radius r at index i covers [i - r, i + r] clipped to [0, n):
 * the window of a voxel near a face is smaller, never padded.  Each output
 * costs one add and one subtract whatever r is.  Sums are in double: the
 * callers difference them (variances), so float running sums would drift.
 */
#ifndef FFDP_CPU_BOXSUM_H
#define FFDP_CPU_BOXSUM_H

#include <stdint.h>

/* Columns per call of ffdp_cpu_box_cols_add: the running sums live on the stack. */
#define FFDP_CPU_BOX_CHUNK 32

/* out[x] = sum of in[x'] over the window of x (n values; out may not alias in). */
void ffdp_cpu_box_row(const double *in, double *out, int64_t n, int64_t r);

/* The same for nq <= 5 rows at once, row q at in + q * istride, out + q *
 * ostride: the nq running sums are independent chains, so they overlap. */
void ffdp_cpu_box_rows(const double *in, int64_t istride, double *out, int64_t ostride, int nq, int64_t n,
		       int64_t r);

/* For x in [x0, x1) (x1 - x0 <= FFDP_CPU_BOX_CHUNK), every row y of an
 * nx-by-ny plane: dst[y*nx + x] += sum of src[y'*nx + x] over the window of y. */
void ffdp_cpu_box_cols_add(const double *src, double *dst, int64_t nx, int64_t ny, int64_t r, int64_t x0,
			   int64_t x1);

/* 1 / (voxels in the window of each index) along an axis of n (n values). */
void ffdp_cpu_box_inv_counts(double *c, int64_t n, int64_t r);

#endif

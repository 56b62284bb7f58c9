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

/* 1 / (voxels in the window of each index) along an axis of n (n values). */
void ffdp_cpu_box_inv_counts(double *c, int64_t n, int64_t r);

/* The two below are inline so that a caller compiled for a wider ISA
 * (LNCC's AVX2 clone) gets them compiled for it too. */
#define BOX_INLINE static inline

/* nq chains in one loop; out[x] = out[x-1] + (in[x+r] - in[x-r-1]) leaves one
 * dependent add per value.  Three ranges avoid tests on the faces. */
BOX_INLINE void box_rows_n(const double *in, int64_t is, double *out, int64_t os, int nq, int64_t n,
			   int64_t r)
{
	double s[5] = {0, 0, 0, 0, 0};
	int64_t x = 0, a = r + 1 < n - r ? r + 1 : n - r; /* [0, a): nothing leaves */

	if (a < 0)
		a = 0;
	for (int q = 0; q < nq; q++)
		for (int64_t j = 0; j < r && j < n; j++)
			s[q] += in[q * is + j];
	for (; x < a; x++)
		for (int q = 0; q < nq; q++)
			out[q * os + x] = s[q] += in[q * is + x + r];
	for (; x < n - r; x++)
		for (int q = 0; q < nq; q++)
			out[q * os + x] = s[q] += in[q * is + x + r] - in[q * is + x - r - 1];
	for (; x < n; x++)
		for (int q = 0; q < nq; q++)
			out[q * os + x] = s[q] += x - r - 1 >= 0 ? -in[q * is + x - r - 1] : 0.0;
}

/* The same as ffdp_cpu_box_row for nq <= 5 rows at once, row q at in + q *
 * istride, out + q * ostride: the nq running sums are independent chains,
 * so they overlap. */
BOX_INLINE void ffdp_cpu_box_rows(const double *in, int64_t istride, double *out, int64_t ostride, int nq,
				  int64_t n, int64_t r)
{
	switch (nq) {
	case 5:
		box_rows_n(in, istride, out, ostride, 5, n, r);
		break;
	case 3:
		box_rows_n(in, istride, out, ostride, 3, n, r);
		break;
	default:
		for (int q = 0; q < nq; q++)
			ffdp_cpu_box_row(in + q * istride, out + q * ostride, n, r);
	}
}

/* ffdp_cpu_box_rows on 4 rows at once, for each of nq quantities: row j of
 * quantity q at in + j * irs + q * iqs (out likewise); tmp holds 8 n
 * doubles.  The 4 rows are transposed into the lanes of a vector, so the
 * running sum is one vector chain doing box_rows_n's operations in its
 * order: the same bits.  AVX2 only (callers check ffdp_cpu_use_avx2). */
void ffdp_cpu_box_rows4_avx2(const double *in, int64_t irs, int64_t iqs, double *out, int64_t ors, int64_t oqs,
			     int nq, int64_t n, int64_t r, double *tmp);

/* The second half of it, for callers that work on the transposed rows
 * (element 4 x + j is row j's x; quantity q at + q * iqs): transposed
 * values in, rows of sums out (tmp: 4 n). */
void ffdp_cpu_box_t_to_rows4(const double *in, int64_t iqs, double *out, int64_t ors, int64_t oqs, int nq, int64_t n,
			     int64_t r, double *tmp);

/* Rows y .. y + 3 of the y box sums (radius ry, ny rows of nx) of nq
 * planes (plane q at in + q * iqs), as a running sum: row y is its
 * window's rows added in order (from = NULL: a restart) or (from's row +
 * entering) - leaving (from: row y - 1, quantity q at + q * nx), each next
 * row (previous + entering) - leaving; then boxed along x (radius rx) into
 * out + q * oqs, transposed (element 4 x + j: row y + j).  keep (or NULL)
 * gets row y + 3 as from takes it.  tmp: 4 nx doubles.  AVX2 only;
 * callers keep a scalar path with the same operations. */
void ffdp_cpu_box_yx4_to_t(const double *in, int64_t iqs, int64_t nx, int64_t ny, int64_t y, int64_t ry, int64_t rx,
			   double *out, int64_t oqs, int nq, double *tmp, const double *from, double *keep);

/* For x in [x0, x1) (x1 - x0 <= FFDP_CPU_BOX_CHUNK), every row y of an
 * nx-by-ny plane: dst[y*nx + x] += sum of src[y'*nx + x] over the window of y. */
BOX_INLINE void ffdp_cpu_box_cols_add(const double *src, double *dst, int64_t nx, int64_t ny, int64_t r,
				      int64_t x0, int64_t x1)
{
	double run[FFDP_CPU_BOX_CHUNK] = {0};
	int64_t w = x1 - x0;
	const double *s = src + x0;
	double *d = dst + x0;

	for (int64_t y = 0; y < r && y < ny; y++)
		for (int64_t j = 0; j < w; j++)
			run[j] += s[y * nx + j];
	for (int64_t y = 0; y < ny; y++) {
		if (y + r < ny) {
			const double *add = s + (y + r) * nx;
			for (int64_t j = 0; j < w; j++)
				run[j] += add[j];
		}
		if (y - r - 1 >= 0) {
			const double *sub = s + (y - r - 1) * nx;
			for (int64_t j = 0; j < w; j++)
				run[j] -= sub[j];
		}
		double *o = d + y * nx;
		for (int64_t j = 0; j < w; j++)
			o[j] += run[j];
	}
}

#endif

/* Trilinear interpolation as a 3x3x3 stencil, eight voxels of a row at a
 * time (AVX2), for composition and the warp step.
 *
 * When a point lies within one voxel of its own voxel along every axis
 * (floor offset -1 or 0), its 8 corners are among the 27 neighbours: the
 * corner rows are the same for the 8 voxels, the corner values come from
 * contiguous loads at x - 1, x, x + 1 and a per-lane choice (blend), not
 * from gathers.  The arithmetic is the scalar trilinear's, in its order
 * (-ffp-contract=off), so the bits agree.  Rows that no lane needs (all
 * offsets of an axis equal, the usual case in a smooth field) are skipped.
 */
#ifndef FFDP_CPU_TRISTENCIL_H
#define FFDP_CPU_TRISTENCIL_H

#if defined(__GNUC__) && defined(__x86_64__)
#define TS_AVX2 1
#include <immintrin.h>
#include <stdint.h>

#define TS_FN static inline __attribute__((always_inline, target("avx2,fma")))

/* Per axis: the lanes whose lower corner is at -1 (mask), the weights of the
 * lower and upper corner, and which rows are needed: lo = -1 or 0 when every
 * lane agrees, mixed = 1 when both occur (rows -1, 0, +1). */
typedef struct ts_axis {
	__m256 m, w0, w1;
	int lo, mixed;
} ts_axis;

TS_FN void ts_axis_set(ts_axis *a, __m256 m, __m256 w0, __m256 w1)
{
	const int bits = _mm256_movemask_ps(m);
	a->m = m, a->w0 = w0, a->w1 = w1;
	a->mixed = bits != 0 && bits != 0xff;
	a->lo = bits == 0xff ? -1 : 0;
}

/* The x-interpolated row at p (lane 0's voxel): w0 * lower + w1 * upper. */
TS_FN __m256 ts_xrow(const float *p, const ts_axis *x)
{
	const __m256 a = _mm256_loadu_ps(p - 1), b = _mm256_loadu_ps(p), c = _mm256_loadu_ps(p + 1);
	const __m256 lo = _mm256_blendv_ps(b, a, x->m), hi = _mm256_blendv_ps(c, b, x->m);
	return _mm256_add_ps(_mm256_mul_ps(x->w0, lo), _mm256_mul_ps(x->w1, hi));
}

/* Lower and upper corner values along an axis from the rows at -1, 0, +1
 * (v[0..2]), then w0 * lower + w1 * upper. */
TS_FN __m256 ts_lerp(const __m256 v[3], const ts_axis *a)
{
	__m256 lo, hi;
	if (a->mixed) {
		lo = _mm256_blendv_ps(v[1], v[0], a->m);
		hi = _mm256_blendv_ps(v[2], v[1], a->m);
	} else {
		lo = v[a->lo + 1];
		hi = v[a->lo + 2];
	}
	return _mm256_add_ps(_mm256_mul_ps(a->w0, lo), _mm256_mul_ps(a->w1, hi));
}

/* One plane (p at lane 0's x), interpolated in x and y. */
TS_FN __m256 ts_plane(const float *p, const int64_t rowoff[3], const ts_axis *ax, const ts_axis *ay)
{
	__m256 v[3];
	if (ay->mixed) {
		for (int e = 0; e < 3; e++)
			v[e] = ts_xrow(p + rowoff[e], ax);
	} else {
		v[ay->lo + 1] = ts_xrow(p + rowoff[ay->lo + 1], ax);
		v[ay->lo + 2] = ts_xrow(p + rowoff[ay->lo + 2], ax);
	}
	return ts_lerp(v, ay);
}

/* The value at 8 points.  plane[e] is slice z - 1 + e, rowoff[e] the offset
 * of row y - 1 + e in it, x lane 0's x; x - 1 .. x + 8 are readable in
 * every row used.  An axis whose lanes agree (the usual case) needs 2
 * planes or rows and no blend, else 3. */
TS_FN __m256 ts_value(const float *const plane[3], const int64_t rowoff[3], int64_t x, const ts_axis *ax,
		      const ts_axis *ay, const ts_axis *az)
{
	__m256 v[3];
	if (az->mixed) {
		for (int e = 0; e < 3; e++)
			v[e] = ts_plane(plane[e] + x, rowoff, ax, ay);
	} else {
		v[az->lo + 1] = ts_plane(plane[az->lo + 1] + x, rowoff, ax, ay);
		v[az->lo + 2] = ts_plane(plane[az->lo + 2] + x, rowoff, ax, ay);
	}
	return ts_lerp(v, az);
}

#endif
#endif

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

/* w0 * lower + w1 * upper along an axis. */
TS_FN __m256 ts_mix(const ts_axis *a, __m256 lo, __m256 hi)
{
	return _mm256_add_ps(_mm256_mul_ps(a->w0, lo), _mm256_mul_ps(a->w1, hi));
}

/* The same from the rows at -1, 0, +1 of a mixed axis: each lane's lower
 * and upper by its mask. */
TS_FN __m256 ts_mix3(const ts_axis *a, __m256 v0, __m256 v1, __m256 v2)
{
	return ts_mix(a, _mm256_blendv_ps(v1, v0, a->m), _mm256_blendv_ps(v2, v1, a->m));
}

/* Groups at a row's ends (edge, a constant at each call): TS_HEAD when lane
 * 0 is the row's first voxel, TS_TAIL when lane 7 is its last; the
 * neighbour beyond the row is then not read but taken as the row's own end
 * voxel (the clamped index of the scalar paths). */
enum { TS_HEAD = 1, TS_TAIL = 2 };

/* The x-interpolated row at p (lane 0's voxel): w0 * lower + w1 * upper. */
TS_FN __m256 ts_xrow(const float *p, const ts_axis *x, const int edge)
{
	const __m256 b = _mm256_loadu_ps(p);
	const __m256 a = edge & TS_HEAD ? _mm256_permutevar8x32_ps(b, _mm256_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6))
					: _mm256_loadu_ps(p - 1);
	const __m256 c = edge & TS_TAIL ? _mm256_permutevar8x32_ps(b, _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7))
					: _mm256_loadu_ps(p + 1);
	return ts_mix3(x, a, b, c);
}

/* One plane (p at lane 0's x), interpolated in x and y.  The rows are
 * picked by offset, not from an array of vectors indexed at run time
 * (which the compiler keeps in memory). */
TS_FN __m256 ts_plane(const float *p, const int64_t rowoff[3], const ts_axis *ax, const ts_axis *ay, const int edge)
{
	if (ay->mixed)
		return ts_mix3(ay, ts_xrow(p + rowoff[0], ax, edge), ts_xrow(p + rowoff[1], ax, edge),
			       ts_xrow(p + rowoff[2], ax, edge));
	const int64_t *o = rowoff + ay->lo + 1;
	return ts_mix(ay, ts_xrow(p + o[0], ax, edge), ts_xrow(p + o[1], ax, edge));
}

/* The value at 8 points.  plane[e] is slice z - 1 + e, rowoff[e] the offset
 * of row y - 1 + e in it, x lane 0's x; x - 1 .. x + 8 are readable in
 * every row used, except beyond the row's ends named in edge.  An axis
 * whose lanes agree (the usual case) needs 2 planes or rows and no blend,
 * else 3. */
TS_FN __m256 ts_value(const float *const plane[3], const int64_t rowoff[3], int64_t x, const ts_axis *ax,
		      const ts_axis *ay, const ts_axis *az, const int edge)
{
	if (az->mixed)
		return ts_mix3(az, ts_plane(plane[0] + x, rowoff, ax, ay, edge),
			       ts_plane(plane[1] + x, rowoff, ax, ay, edge), ts_plane(plane[2] + x, rowoff, ax, ay, edge));
	const float *const *p = plane + az->lo + 1;
	return ts_mix(az, ts_plane(p[0] + x, rowoff, ax, ay, edge), ts_plane(p[1] + x, rowoff, ax, ay, edge));
}

#endif
#endif

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

/* Groups at a row's ends (edge, a constant at each call): TS_HEAD when lane
 * 0 is the row's first voxel, TS_TAIL when lane 7 is its last; the
 * neighbour beyond the row is then not read but taken as the row's own end
 * voxel (the clamped index of the scalar paths). */
enum { TS_HEAD = 1, TS_TAIL = 2 };

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

/* Lanes at an axis's first index whose corner reaches back (lo) and at its
 * last whose cell starts there (hi) take the pads' taps (tl_axis_int,
 * tl_axis_border, tl_axis_zero): border puts weight 1 on the end voxel
 * itself, zero drops the outside corner (the rows are clamped, so its
 * value is the end voxel's times 0).  m, w0, w1 as ts_axis_set takes them. */
TS_FN void ts_face(__m256 lo, __m256 hi, const int border, __m256 *m, __m256 *w0, __m256 *w1)
{
	if (border) {
		const __m256 e = _mm256_or_ps(lo, hi);
		*m = _mm256_andnot_ps(lo, *m);
		*w0 = _mm256_blendv_ps(*w0, _mm256_set1_ps(1.0f), e);
		*w1 = _mm256_andnot_ps(e, *w1);
	} else {
		*w0 = _mm256_andnot_ps(lo, *w0);
		*w1 = _mm256_andnot_ps(hi, *w1);
	}
}

/* The lanes of m (face & 1: the axis's first index) or not of m (face & 2:
 * its last) at the faces of a row or plane, as ts_face's lo and hi. */
TS_FN void ts_face_lanes(int face, __m256 m, __m256 *lo, __m256 *hi)
{
	*lo = face & 1 ? m : _mm256_setzero_ps();
	*hi = face & 2 ? _mm256_andnot_ps(m, _mm256_castsi256_ps(_mm256_set1_epi32(-1))) : _mm256_setzero_ps();
}

/* The pads' taps for a group: along x at the row's ends named in edge
 * (lane 0 at the first voxel, lane 7 at the last), along y and z where
 * face[1], face[2] say the row lies on the box's first (1) or last (2)
 * row or plane. */
TS_FN void ts_faces(const int edge, const int face[3], const int border, __m256 m[3], __m256 w0[3], __m256 w1[3])
{
	__m256 lo, hi;
	if (edge) {
		const __m256 l0 = _mm256_castsi256_ps(_mm256_setr_epi32(-1, 0, 0, 0, 0, 0, 0, 0));
		const __m256 l7 = _mm256_castsi256_ps(_mm256_setr_epi32(0, 0, 0, 0, 0, 0, 0, -1));
		lo = edge & TS_HEAD ? _mm256_and_ps(l0, m[0]) : _mm256_setzero_ps();
		hi = edge & TS_TAIL ? _mm256_andnot_ps(m[0], l7) : _mm256_setzero_ps();
		ts_face(lo, hi, border, &m[0], &w0[0], &w1[0]);
	}
	for (int a = 1; a < 3; a++)
		if (face[a]) {
			ts_face_lanes(face[a], m[a], &lo, &hi);
			ts_face(lo, hi, border, &m[a], &w0[a], &w1[a]);
		}
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

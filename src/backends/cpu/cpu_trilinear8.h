/* Trilinear interpolation of 8 points at once with AVX2: the interior path
 * of cpu_trilinear.h (every cell inside the box) for the kernels that gather
 * their corners (sampler, field inverse).  Points come in double (two
 * halves of 4 lanes), weights and values are float; every operation is the
 * scalar path's, in its order and without contraction (-ffp-contract=off),
 * so the bits agree.  Offsets are 32-bit: the box must hold fewer than 2^31
 * voxels.  Callers compile with target("avx2,fma") and keep the scalar
 * path for groups with a cell outside.
 */
#ifndef FFDP_CPU_TRILINEAR8_H
#define FFDP_CPU_TRILINEAR8_H

#if defined(__GNUC__) && defined(__x86_64__)
#define TL8_AVX2 1
#include <immintrin.h>

#define TL8_FN static inline __attribute__((always_inline, target("avx2,fma")))

typedef struct tl8 {
	__m256 w1[3];   /* fractions: weight of the upper corner per axis */
	__m128i lo, hi; /* first corners in the box: voxels 0 1 4 5 and 2 3 6 7 */
	__m256 c[4][2]; /* corners: rows (y0 z0, y1 z0, y0 z1, y1 z1), x pair */
} tl8;

/* Where corners may be read: cells inside [lo, lo + n - 1) per axis in the
 * points' frame (the whole volume, or a box of it), and the layout of the
 * memory holding them: a box at index blo of size bn (bn[2] unused). */
typedef struct tl8_box {
	double lo[3], last[3]; /* lo as double, n - 1 */
	int blo[3], nx, nxy;
} tl8_box;

static inline tl8_box tl8_box_make(const int64_t lo[3], const int64_t n[3], const int64_t blo[3],
				   const int64_t bn[3])
{
	tl8_box b;
	for (int k = 0; k < 3; k++)
		b.lo[k] = (double)lo[k], b.last[k] = (double)(n[k] - 1), b.blo[k] = (int)blo[k];
	b.nx = (int)bn[0], b.nxy = (int)(bn[0] * bn[1]);
	return b;
}

/* Weights and first-corner offsets of 8 points p[h][k] (voxel 4h + lane,
 * axis k); 0 when a cell is not inside the box (t is then unusable).  As
 * tl_inside and tl_axis_inner: q = p - lo decides, floor(p) and
 * (float)(p - floor(p)) give the corner and the weight. */
TL8_FN int tl8_locate(const tl8_box *b, const __m256d p[2][3], tl8 *t)
{
	__m128 fr[2][3];
	__m128i ii[2][3];
	int ok = 1;
	for (int h = 0; h < 2; h++)
		for (int k = 0; k < 3; k++) {
			__m256d q = _mm256_sub_pd(p[h][k], _mm256_set1_pd(b->lo[k]));
			__m256d in = _mm256_and_pd(_mm256_cmp_pd(q, _mm256_setzero_pd(), _CMP_GE_OQ),
						   _mm256_cmp_pd(q, _mm256_set1_pd(b->last[k]), _CMP_LT_OQ));
			ok &= _mm256_movemask_pd(in) == 15;
			__m256d fl = _mm256_floor_pd(p[h][k]);
			fr[h][k] = _mm256_cvtpd_ps(_mm256_sub_pd(p[h][k], fl));
			ii[h][k] = _mm256_cvttpd_epi32(fl);
		}
	if (!ok)
		return 0;
	for (int k = 0; k < 3; k++)
		t->w1[k] = _mm256_set_m128(fr[1][k], fr[0][k]);
	__m256i ix = _mm256_set_m128i(ii[1][0], ii[0][0]), iy = _mm256_set_m128i(ii[1][1], ii[0][1]);
	__m256i iz = _mm256_set_m128i(ii[1][2], ii[0][2]);
	ix = _mm256_sub_epi32(ix, _mm256_set1_epi32(b->blo[0]));
	iy = _mm256_sub_epi32(iy, _mm256_set1_epi32(b->blo[1]));
	iz = _mm256_sub_epi32(iz, _mm256_set1_epi32(b->blo[2]));
	__m256i o = _mm256_add_epi32(ix, _mm256_add_epi32(_mm256_mullo_epi32(iy, _mm256_set1_epi32(b->nx)),
							 _mm256_mullo_epi32(iz, _mm256_set1_epi32(b->nxy))));
	o = _mm256_permute4x64_epi64(o, _MM_SHUFFLE(3, 1, 2, 0));
	t->lo = _mm256_castsi256_si128(o), t->hi = _mm256_extracti128_si256(o, 1);
	return 1;
}

/* x pair (a: lower x, b: upper x) of the corner row at offset off from each
 * voxel's first corner: one 64-bit gather per 4 voxels, then one in-lane
 * shuffle per pair gives voxel order. */
TL8_FN void tl8_pair(const float *m, __m128i lo, __m128i hi, int off, __m256 *a, __m256 *b)
{
	__m128i o = _mm_set1_epi32(off);
	__m256 pl = _mm256_castsi256_ps(_mm256_i32gather_epi64((const long long *)m, _mm_add_epi32(lo, o), 4));
	__m256 ph = _mm256_castsi256_ps(_mm256_i32gather_epi64((const long long *)m, _mm_add_epi32(hi, o), 4));
	*a = _mm256_shuffle_ps(pl, ph, _MM_SHUFFLE(2, 0, 2, 0));
	*b = _mm256_shuffle_ps(pl, ph, _MM_SHUFFLE(3, 1, 3, 1));
}

/* The 8 corners of each point in volume m (the box's layout). */
TL8_FN void tl8_gather(const tl8_box *b, const float *m, tl8 *t)
{
	tl8_pair(m, t->lo, t->hi, 0, &t->c[0][0], &t->c[0][1]);
	tl8_pair(m, t->lo, t->hi, b->nx, &t->c[1][0], &t->c[1][1]);
	tl8_pair(m, t->lo, t->hi, b->nxy, &t->c[2][0], &t->c[2][1]);
	tl8_pair(m, t->lo, t->hi, b->nx + b->nxy, &t->c[3][0], &t->c[3][1]);
}

/* tl_value. */
TL8_FN __m256 tl8_value(const tl8 *t)
{
	const __m256 one = _mm256_set1_ps(1.0f);
	__m256 x1 = t->w1[0], y1 = t->w1[1], z1 = t->w1[2];
	__m256 x0 = _mm256_sub_ps(one, x1), y0 = _mm256_sub_ps(one, y1), z0 = _mm256_sub_ps(one, z1);
	__m256 e[4];
	for (int r = 0; r < 4; r++)
		e[r] = _mm256_add_ps(_mm256_mul_ps(x0, t->c[r][0]), _mm256_mul_ps(x1, t->c[r][1]));
	__m256 v0 = _mm256_add_ps(_mm256_mul_ps(y0, e[0]), _mm256_mul_ps(y1, e[1]));
	__m256 v1 = _mm256_add_ps(_mm256_mul_ps(y0, e[2]), _mm256_mul_ps(y1, e[3]));
	return _mm256_add_ps(_mm256_mul_ps(z0, v0), _mm256_mul_ps(z1, v1));
}

/* tl_value_grad with the interior weights' derivatives (-1, 1): d0 a + d1 b
 * is b - a, the same bits.  Returns the value. */
TL8_FN __m256 tl8_value_grad(const tl8 *t, __m256 g[3])
{
	const __m256 one = _mm256_set1_ps(1.0f);
	__m256 x1 = t->w1[0], y1 = t->w1[1], z1 = t->w1[2];
	__m256 x0 = _mm256_sub_ps(one, x1), y0 = _mm256_sub_ps(one, y1), z0 = _mm256_sub_ps(one, z1);
	__m256 e[4], d[4];
	for (int r = 0; r < 4; r++) {
		e[r] = _mm256_add_ps(_mm256_mul_ps(x0, t->c[r][0]), _mm256_mul_ps(x1, t->c[r][1]));
		d[r] = _mm256_sub_ps(t->c[r][1], t->c[r][0]);
	}
	__m256 v0 = _mm256_add_ps(_mm256_mul_ps(y0, e[0]), _mm256_mul_ps(y1, e[1]));
	__m256 v1 = _mm256_add_ps(_mm256_mul_ps(y0, e[2]), _mm256_mul_ps(y1, e[3]));
	__m256 gx = _mm256_add_ps(_mm256_mul_ps(y0, d[0]), _mm256_mul_ps(y1, d[1])), gy = _mm256_sub_ps(e[1], e[0]);
	__m256 hx = _mm256_add_ps(_mm256_mul_ps(y0, d[2]), _mm256_mul_ps(y1, d[3]));
	g[0] = _mm256_add_ps(_mm256_mul_ps(z0, gx), _mm256_mul_ps(z1, hx));
	g[1] = _mm256_add_ps(_mm256_mul_ps(z0, gy), _mm256_mul_ps(z1, _mm256_sub_ps(e[3], e[2])));
	g[2] = _mm256_sub_ps(v1, v0);
	return _mm256_add_ps(_mm256_mul_ps(z0, v0), _mm256_mul_ps(z1, v1));
}

/* Lanes of half h (0: voxels 0-3, 1: voxels 4-7) as 4 doubles. */
TL8_FN __m256d tl8_half_pd(__m256 v, int h)
{
	return _mm256_cvtps_pd(h ? _mm256_extractf128_ps(v, 1) : _mm256_castps256_ps128(v));
}

#endif
#endif

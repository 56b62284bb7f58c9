/* Trilinear interpolation of 8 points at once with AVX2, cpu_trilinear.h's
 * interior and padded paths, for the kernels that gather their corners
 * (sampler, field inverse).  Points come in double (two halves of 4 lanes),
 * weights and values are float; every operation is the scalar path's, in
 * its order and without contraction (-ffp-contract=off), so the bits agree.
 * Offsets are 32-bit: the box must hold fewer than 2^31 voxels.  Callers
 * compile with target("avx2,fma").
 */
#ifndef FFDP_CPU_TRILINEAR8_H
#define FFDP_CPU_TRILINEAR8_H

#if defined(__GNUC__) && defined(__x86_64__)
#define TL8_AVX2 1
#include <immintrin.h>
#include <stdint.h>

#include "ffdp/ops.h"

#define TL8_FN static inline __attribute__((always_inline, target("avx2,fma")))

typedef struct tl8 {
	__m256 w0[3], w1[3];  /* weights of the lower and upper corner per axis */
	__m256 d0[3], d1[3];  /* their derivatives */
	int padded;           /* 0: interior, corners as x pairs; 1: any corner offsets */
	int run;              /* interior, all in one row, x within 8: first corner's offset, else -1 */
	__m256i dx;           /* with run: each point's x cell minus the first point's */
	__m128i lo, hi;       /* interior: first corners of voxels 0 1 4 5 and 2 3 6 7 */
	int o0;               /* interior: voxel 0's first corner */
	__m256i ox[2], oy[2], oz[2]; /* padded: each corner's offset per axis */
	__m256 c[4][2];       /* corners: rows (y0 z0, y1 z0, y0 z1, y1 z1), x pair */
} tl8;

/* Where corners may be read: points are judged against a domain of size n
 * at index lo per axis (the whole volume, or w's box), and read from memory
 * holding a box at index blo of size bn. */
typedef struct tl8_box {
	double lo[3], last[3]; /* domain: lo and n - 1 as double */
	int dlo[3], dn[3], blo[3], nx, nxy;
	int64_t nb;            /* floats in the box */
	int bshift;            /* blo's offset, blo[0] + blo[1] nx + blo[2] nxy, mod 2^32 */
	int64_t rlim;          /* a run's windows (rows to nx + nxy, 9 floats) fit below it */
} tl8_box;

static inline tl8_box tl8_box_make(const int64_t lo[3], const int64_t n[3], const int64_t blo[3],
				   const int64_t bn[3])
{
	tl8_box b;
	for (int k = 0; k < 3; k++) {
		b.lo[k] = (double)lo[k], b.last[k] = (double)(n[k] - 1);
		b.dlo[k] = (int)lo[k], b.dn[k] = (int)n[k], b.blo[k] = (int)blo[k];
	}
	b.nx = (int)bn[0], b.nxy = (int)(bn[0] * bn[1]);
	b.nb = bn[0] * bn[1] * bn[2];
	b.bshift = (int)(uint32_t)(blo[0] + blo[1] * bn[0] + blo[2] * bn[0] * bn[1]);
	b.rlim = b.nb - b.nx - b.nxy - 8;
	return b;
}

/* 8 int32 lanes from two halves of 4 doubles (exact integers). */
TL8_FN __m256i tl8_int(__m256d lo, __m256d hi)
{
	return _mm256_set_m128i(_mm256_cvttpd_epi32(hi), _mm256_cvttpd_epi32(lo));
}

TL8_FN __m256 tl8_float(__m256d lo, __m256d hi)
{
	return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
}

/* The interior offsets of 8 points whose first corners have domain
 * indices ii (inside, per axis): the box's first-corner offsets as x
 * pairs, and whether they form a run. */
TL8_FN void tl8_inner_offsets(const tl8_box *b, const __m256i ii[3], tl8 *t)
{
	/* the box's origin subtracted once: the sums wrap in 32 bits, the
	 * offsets themselves fit */
	__m256i row = _mm256_add_epi32(_mm256_mullo_epi32(ii[1], _mm256_set1_epi32(b->nx)),
				       _mm256_mullo_epi32(ii[2], _mm256_set1_epi32(b->nxy)));
	__m256i o = _mm256_sub_epi32(_mm256_add_epi32(ii[0], row), _mm256_set1_epi32(b->bshift));
	t->padded = 0;
	/* a run: every corner row is one 9-float window (smooth fields, affine maps) */
	__m256i first = _mm256_broadcastd_epi32(_mm256_castsi256_si128(o));
	__m256i row0 = _mm256_broadcastd_epi32(_mm256_castsi256_si128(row));
	t->dx = _mm256_sub_epi32(o, first);
	/* 0 <= dx <= 7 (unsigned) and one row */
	const __m256i seven = _mm256_set1_epi32(7);
	__m256i ok = _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_max_epu32(t->dx, seven), seven),
				      _mm256_cmpeq_epi32(row, row0));
	t->o0 = _mm_cvtsi128_si32(_mm256_castsi256_si128(o));
	t->run = _mm256_testc_si256(ok, _mm256_set1_epi32(-1)) && t->o0 < b->rlim ? t->o0 : -1;
	o = _mm256_permute4x64_epi64(o, _MM_SHUFFLE(3, 1, 2, 0));
	t->lo = _mm256_castsi256_si128(o), t->hi = _mm256_extracti128_si256(o, 1);
}

/* Weights and first-corner offsets of 8 points p[h][k] (voxel 4h + lane,
 * axis k) when every cell lies inside the domain, lo <= floor(p) <= lo + n
 * - 2 (NaN and points beyond int32 convert to INT32_MIN and fail): the
 * scalar path judges by p - lo, whose rounding only moves the switch
 * between paths that agree.  tl_axis_inner: floor(p) and (float)(p -
 * floor(p)) give the corner and the weight.  0 otherwise (t unusable). */
TL8_FN int tl8_locate(const tl8_box *b, const __m256d p[2][3], tl8 *t)
{
	__m256d fl[2][3];
	__m256i ii[3], in = _mm256_set1_epi32(-1);
	for (int k = 0; k < 3; k++) {
		fl[0][k] = _mm256_floor_pd(p[0][k]), fl[1][k] = _mm256_floor_pd(p[1][k]);
		ii[k] = tl8_int(fl[0][k], fl[1][k]);
		in = _mm256_and_si256(in, _mm256_cmpgt_epi32(ii[k], _mm256_set1_epi32(b->dlo[k] - 1)));
		in = _mm256_and_si256(in, _mm256_cmpgt_epi32(_mm256_set1_epi32(b->dlo[k] + b->dn[k] - 1), ii[k]));
	}
	if (_mm256_movemask_epi8(in) != -1)
		return 0;
	for (int k = 0; k < 3; k++) {
		t->w1[k] = tl8_float(_mm256_sub_pd(p[0][k], fl[0][k]), _mm256_sub_pd(p[1][k], fl[1][k]));
		t->w0[k] = _mm256_sub_ps(_mm256_set1_ps(1.0f), t->w1[k]);
		t->d0[k] = _mm256_set1_ps(-1.0f), t->d1[k] = _mm256_set1_ps(1.0f);
	}
	tl8_inner_offsets(b, ii, t);
	return 1;
}

/* Axis k's first and second corner domain indices i0, i1 (clamped into
 * the domain) to the memory box's offsets in t. */
TL8_FN void tl8_offsets(const tl8_box *b, int k, __m256i i0, __m256i i1, tl8 *t)
{
	const int stride[3] = {1, b->nx, b->nxy};
	__m256i shift = _mm256_set1_epi32(b->dlo[k] - b->blo[k]), st = _mm256_set1_epi32(stride[k]);
	__m256i o0 = _mm256_mullo_epi32(_mm256_add_epi32(i0, shift), st);
	__m256i o1 = _mm256_mullo_epi32(_mm256_add_epi32(i1, shift), st);
	if (k == 0)
		t->ox[0] = o0, t->ox[1] = o1;
	else if (k == 1)
		t->oy[0] = o0, t->oy[1] = o1;
	else
		t->oz[0] = o0, t->oz[1] = o1;
}

/* Any 8 points, with padding: tl_axis_zero / tl_axis_border per axis (on
 * an axis where the cell is inside they give tl_axis_inner's bits). */
TL8_FN void tl8_locate_pad(const tl8_box *b, const __m256d p[2][3], const ffdp_pad pad, tl8 *t)
{
	const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
	for (int k = 0; k < 3; k++) {
		const int border = pad == FFDP_PAD_BORDER;
		const __m256d lo = _mm256_set1_pd(border ? b->lo[k] : b->lo[k] - 2.0);
		const __m256d hi = _mm256_set1_pd(border ? b->lo[k] + b->last[k] : b->lo[k] + b->last[k] + 2.0);
		__m256d q[2], fl[2], in[2];
		for (int h = 0; h < 2; h++) {
			/* max(p, lo) is lo for NaN, as p > lo ? p : lo */
			q[h] = _mm256_min_pd(_mm256_max_pd(p[h][k], lo), hi);
			fl[h] = _mm256_floor_pd(q[h]);
			in[h] = _mm256_and_pd(_mm256_and_pd(_mm256_cmp_pd(p[h][k], lo, _CMP_GE_OQ),
							    _mm256_cmp_pd(p[h][k], hi, _CMP_LE_OQ)),
					      _mm256_set1_pd(1.0));
		}
		__m256 f = tl8_float(_mm256_sub_pd(q[0], fl[0]), _mm256_sub_pd(q[1], fl[1]));
		__m256i i0 = _mm256_sub_epi32(tl8_int(fl[0], fl[1]), _mm256_set1_epi32(b->dlo[k]));
		__m256i n = _mm256_set1_epi32(b->dn[k]), last = _mm256_set1_epi32(b->dn[k] - 1), i1;
		if (border) {
			__m256 v = tl8_float(in[0], in[1]);
			i1 = _mm256_sub_epi32(i0, _mm256_cmpgt_epi32(last, i0));
			t->w0[k] = _mm256_sub_ps(one, f), t->w1[k] = f;
			t->d0[k] = _mm256_xor_ps(v, sign), t->d1[k] = v;
		} else {
			i1 = _mm256_add_epi32(i0, _mm256_set1_epi32(1));
			__m256i m0 = _mm256_and_si256(_mm256_cmpgt_epi32(i0, _mm256_set1_epi32(-1)), _mm256_cmpgt_epi32(n, i0));
			__m256i m1 = _mm256_and_si256(_mm256_cmpgt_epi32(i1, _mm256_set1_epi32(-1)), _mm256_cmpgt_epi32(n, i1));
			__m256 v0 = _mm256_and_ps(_mm256_castsi256_ps(m0), one), v1 = _mm256_and_ps(_mm256_castsi256_ps(m1), one);
			t->w0[k] = _mm256_mul_ps(_mm256_sub_ps(one, f), v0), t->w1[k] = _mm256_mul_ps(f, v1);
			t->d0[k] = _mm256_xor_ps(v0, sign), t->d1[k] = v1;
			i0 = _mm256_min_epi32(_mm256_max_epi32(i0, _mm256_setzero_si256()), last);
			i1 = _mm256_min_epi32(_mm256_max_epi32(i1, _mm256_setzero_si256()), last);
		}
		tl8_offsets(b, k, i0, i1, t);
	}
	t->padded = 1;
	t->lo = t->hi = _mm_setzero_si128(); /* unread; set for -Wmaybe-uninitialized */
}

/* tl_axis_int for 8 points: first-corner domain indices i0 (relative to
 * the domain's lo) and fractions f per axis, with padding. */
TL8_FN void tl8_taps_int_pad(const tl8_box *b, const __m256i i0[3], const __m256 f[3], const ffdp_pad pad,
			     tl8 *t)
{
	const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
	for (int k = 0; k < 3; k++) {
		__m256i n = _mm256_set1_epi32(b->dn[k]), last = _mm256_set1_epi32(b->dn[k] - 1);
		__m256i a = i0[k], a1;
		if (pad == FFDP_PAD_BORDER) {
			__m256i out = _mm256_or_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), a),
						      _mm256_cmpgt_epi32(a, last));
			__m256 fpos = _mm256_cmp_ps(f[k], _mm256_setzero_ps(), _CMP_GT_OQ);
			out = _mm256_or_si256(out, _mm256_and_si256(_mm256_cmpeq_epi32(a, last), _mm256_castps_si256(fpos)));
			__m256 fo = _mm256_andnot_ps(_mm256_castsi256_ps(out), f[k]);
			__m256 in = _mm256_andnot_ps(_mm256_castsi256_ps(out), one);
			a = _mm256_min_epi32(_mm256_max_epi32(a, _mm256_setzero_si256()), last);
			a1 = _mm256_sub_epi32(a, _mm256_cmpgt_epi32(last, a));
			t->w0[k] = _mm256_sub_ps(one, fo), t->w1[k] = fo;
			t->d0[k] = _mm256_xor_ps(in, sign), t->d1[k] = in;
		} else {
			a1 = _mm256_add_epi32(a, _mm256_set1_epi32(1));
			__m256i m0 = _mm256_and_si256(_mm256_cmpgt_epi32(a, _mm256_set1_epi32(-1)), _mm256_cmpgt_epi32(n, a));
			__m256i m1 = _mm256_and_si256(_mm256_cmpgt_epi32(a1, _mm256_set1_epi32(-1)), _mm256_cmpgt_epi32(n, a1));
			__m256 v0 = _mm256_and_ps(_mm256_castsi256_ps(m0), one), v1 = _mm256_and_ps(_mm256_castsi256_ps(m1), one);
			t->w0[k] = _mm256_mul_ps(_mm256_sub_ps(one, f[k]), v0), t->w1[k] = _mm256_mul_ps(f[k], v1);
			t->d0[k] = _mm256_xor_ps(v0, sign), t->d1[k] = v1;
			a = _mm256_min_epi32(_mm256_max_epi32(a, _mm256_setzero_si256()), last);
			a1 = _mm256_min_epi32(_mm256_max_epi32(a1, _mm256_setzero_si256()), last);
		}
		tl8_offsets(b, k, a, a1, t);
	}
	t->padded = 1;
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

/* The corner row at w of 8 points in a run: a 9-float window read at x
 * and at x + 1, permuted by each point's x cell. */
TL8_FN void tl8_window(const float *w, __m256i dx, __m256 *a, __m256 *b)
{
	*a = _mm256_permutevar8x32_ps(_mm256_loadu_ps(w), dx);
	*b = _mm256_permutevar8x32_ps(_mm256_loadu_ps(w + 1), dx);
}

/* A run's corners (rows y0 z0, y1 z0, y0 z1, y1 z1; x pair) into c. */
TL8_FN void tl8_run_rows(const tl8_box *b, const float *m, const tl8 *t, __m256 c[4][2])
{
	const int off[4] = {0, b->nx, b->nxy, b->nx + b->nxy};
	for (int r = 0; r < 4; r++)
		tl8_window(m + t->run + off[r], t->dx, &c[r][0], &c[r][1]);
}

/* The 8 corners of each point in volume m (the box's layout).  A run reads
 * each corner row's window twice (from x and x + 1) and permutes; other
 * interior groups gather x pairs. */
TL8_FN void tl8_gather(const tl8_box *b, const float *m, tl8 *t)
{
	if (!t->padded && t->run >= 0) {
		tl8_run_rows(b, m, t, t->c);
		return;
	}
	if (!t->padded) {
		tl8_pair(m, t->lo, t->hi, 0, &t->c[0][0], &t->c[0][1]);
		tl8_pair(m, t->lo, t->hi, b->nx, &t->c[1][0], &t->c[1][1]);
		tl8_pair(m, t->lo, t->hi, b->nxy, &t->c[2][0], &t->c[2][1]);
		tl8_pair(m, t->lo, t->hi, b->nx + b->nxy, &t->c[3][0], &t->c[3][1]);
		return;
	}
	for (int r = 0; r < 4; r++) {
		__m256i row = _mm256_add_epi32(t->oy[r & 1], t->oz[r >> 1]);
		for (int x = 0; x < 2; x++)
			t->c[r][x] = _mm256_i32gather_ps(m, _mm256_add_epi32(row, t->ox[x]), 4);
	}
}

/* The corner rows of 8 interior points that are not a run, x pairs read
 * by plain 64-bit loads (four per half row; through the may-alias vector
 * types) from the first corners o of voxels 0 1 4 5 2 3 6 7: the elements
 * tl8_pair gathers, so the same bits.  On Zen 3 the 8 gathers of a group
 * cost more than its 32 loads, inserts and shuffles (docs/perf.md, "CPU
 * sampler, eighth session"). */
TL8_FN void tl8_pair_rows(const tl8_box *b, const float *m, const tl8 *t, __m256 c[4][2])
{
	/* two voxels at a time, each offset read once for its four rows:
	 * fewer general registers live than row by row */
	int o[8];
	_mm_storeu_si128((__m128i *)o, t->lo);
	_mm_storeu_si128((__m128i *)(o + 4), t->hi);
	const float *row[4] = {m, m + b->nx, m + b->nxy, m + b->nx + b->nxy};
	__m256 p[2][4];
	for (int h = 0; h < 2; h++) {
		__m128 q[2][4];
		for (int i = 0; i < 2; i++) {
			const int64_t l0 = o[4 * h + 2 * i], l1 = o[4 * h + 2 * i + 1];
			for (int r = 0; r < 4; r++) {
				q[i][r] = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(row[r] + l0)));
				q[i][r] = _mm_loadh_pi(q[i][r], (const __m64 *)(row[r] + l1));
			}
		}
		for (int r = 0; r < 4; r++)
			p[h][r] = _mm256_insertf128_ps(_mm256_castps128_ps256(q[0][r]), q[1][r], 1);
	}
	for (int r = 0; r < 4; r++) {
		c[r][0] = _mm256_shuffle_ps(p[0][r], p[1][r], _MM_SHUFFLE(2, 0, 2, 0));
		c[r][1] = _mm256_shuffle_ps(p[0][r], p[1][r], _MM_SHUFFLE(3, 1, 3, 1));
	}
}

/* tl8_gather with the interior x pairs of groups that are not runs read
 * by tl8_pair_rows. */
TL8_FN void tl8_gather_loads(const tl8_box *b, const float *m, tl8 *t)
{
	if (t->padded || t->run >= 0)
		tl8_gather(b, m, t);
	else
		tl8_pair_rows(b, m, t, t->c);
}

#define TL8_LERP(w0, a, w1, b) _mm256_add_ps(_mm256_mul_ps(w0, a), _mm256_mul_ps(w1, b))

/* tl_value from the corners c and the weights. */
TL8_FN __m256 tl8_lerp(const __m256 c[4][2], const __m256 w0[3], const __m256 w1[3])
{
	__m256 e[4];
	for (int r = 0; r < 4; r++)
		e[r] = TL8_LERP(w0[0], c[r][0], w1[0], c[r][1]);
	__m256 v0 = TL8_LERP(w0[1], e[0], w1[1], e[1]);
	__m256 v1 = TL8_LERP(w0[1], e[2], w1[1], e[3]);
	return TL8_LERP(w0[2], v0, w1[2], v1);
}

/* tl_value. */
TL8_FN __m256 tl8_value(const tl8 *t)
{
	return tl8_lerp(t->c, t->w0, t->w1);
}

/* tl_value_grad from the corners c, the weights and their derivatives:
 * the value, and its gradient in g.  Interior weights' derivatives (in)
 * are (-1, 1), where d0 a + d1 b is b - a with the same bits: the shorter
 * form there. */
TL8_FN __m256 tl8_lerp_grad(const __m256 c[4][2], const __m256 w0[3], const __m256 w1[3], const __m256 d0[3],
			    const __m256 d1[3], const int in, __m256 g[3])
{
	__m256 e[4], d[4];
	for (int r = 0; r < 4; r++) {
		e[r] = TL8_LERP(w0[0], c[r][0], w1[0], c[r][1]);
		d[r] = in ? _mm256_sub_ps(c[r][1], c[r][0]) : TL8_LERP(d0[0], c[r][0], d1[0], c[r][1]);
	}
	__m256 v0 = TL8_LERP(w0[1], e[0], w1[1], e[1]);
	__m256 v1 = TL8_LERP(w0[1], e[2], w1[1], e[3]);
	__m256 gx = TL8_LERP(w0[1], d[0], w1[1], d[1]), hx = TL8_LERP(w0[1], d[2], w1[1], d[3]);
	__m256 gy = in ? _mm256_sub_ps(e[1], e[0]) : TL8_LERP(d0[1], e[0], d1[1], e[1]);
	__m256 hy = in ? _mm256_sub_ps(e[3], e[2]) : TL8_LERP(d0[1], e[2], d1[1], e[3]);
	g[0] = TL8_LERP(w0[2], gx, w1[2], hx);
	g[1] = TL8_LERP(w0[2], gy, w1[2], hy);
	g[2] = in ? _mm256_sub_ps(v1, v0) : TL8_LERP(d0[2], v0, d1[2], v1);
	return TL8_LERP(w0[2], v0, w1[2], v1);
}

/* tl_value_grad. */
TL8_FN __m256 tl8_value_grad(const tl8 *t, __m256 g[3])
{
	return tl8_lerp_grad(t->c, t->w0, t->w1, t->d0, t->d1, !t->padded, g);
}

/* The corners of 8 interior points (tl8_inner_offsets in t) as
 * tl8_gather_loads reads them, into c instead of t. */
TL8_FN void tl8_inner_rows(const tl8_box *b, const float *m, const tl8 *t, __m256 c[4][2])
{
	if (t->run < 0)
		tl8_pair_rows(b, m, t, c);
	else
		tl8_run_rows(b, m, t, c);
}

/* tl_value of 8 interior points (tl8_inner_offsets in t) whose x, y, z
 * fractions are w1: tl8_gather_loads and tl8_value without a tl8's
 * corners and weights (fewer registers live, the same operations). */
TL8_FN __m256 tl8_value_inner(const tl8_box *b, const float *m, const tl8 *t, const __m256 w1[3])
{
	__m256 c[4][2], w0[3];
	tl8_inner_rows(b, m, t, c);
	for (int k = 0; k < 3; k++)
		w0[k] = _mm256_sub_ps(_mm256_set1_ps(1.0f), w1[k]);
	return tl8_lerp(c, w0, w1);
}

/* Lanes of half h (0: voxels 0-3, 1: voxels 4-7) as 4 doubles. */
TL8_FN __m256d tl8_half_pd(__m256 v, int h)
{
	return _mm256_cvtps_pd(h ? _mm256_extractf128_ps(v, 1) : _mm256_castps256_ps128(v));
}

#endif
#endif

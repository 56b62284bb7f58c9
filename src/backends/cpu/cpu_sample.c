/* The fused sampler on the CPU: out(j) = M(W [i;1] + B u(j)), i = lo + j.
 *
 * Parallel over the (z, y) rows of the output box.  A point depends on the
 * global index alone, never on where the box starts, so a shard reproduces
 * the matching part of the full output bit for bit.  The linear 3-D sampler
 * forms it in the fixed-point frame (smp_fx_ok: exact 32.32 sums of W [i;1],
 * B u added to the fraction in float, integer taps); the other cases in
 * double, p = rowbase + gx W[:,0] (+ B u).  One test per point picks the
 * interior path or the branch-free padded one (cpu_trilinear.h); they give
 * the same bits.
 *
 * Floor (bytes that must move per output voxel): forward 4 written (+4 read
 * when accumulating) + 12 of u (8 in 2-D) + ~4 of M when its footprint stays
 * in cache between neighbouring rows: 20 B with u, 8 B without.  Backward:
 * gout 4 + u 12 + gu 12 written (+12 read when accumulating) + M 4 = 32 B;
 * gM adds a scatter of 8 atomic updates per voxel.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "cpu_ops.h"
#include "cpu_trilinear.h"
#include "cpu_trilinear8.h"

typedef struct smp {
	const float *m;
	int64_t mn[3], ms[3]; /* whole moving volume's size, the box's strides */
	int64_t mlo[3];       /* the box's origin in the whole volume */
	int64_t mb[3];        /* the box's size */
	int64_t mshift;       /* sum of mlo[k] ms[k]: box offset = whole-volume offset - mshift */
	int64_t gate[2];      /* z gate (ops.h), or gate[1] <= gate[0] */
	const double *W, *B;
	const float *u[3];    /* on the output box; u[0] NULL: no field, u[2] NULL: 2 components */
	int64_t lo[3], on[3]; /* output box */
	ffdp_pad pad;
	int d3;               /* 0: 2-D problem, the z row and column of W and B are ignored */
	int fx;               /* linear points in the fixed-point frame (smp_fx_ok) */
	int64_t Wq[12];       /* W in 32.32 fixed point, with fx */
	float Bf[9];          /* B rounded to float, with fx */
} smp;

/* The fixed-point frame (linear 3-D, u of three components or none): the
 * affine part of the point, W [lo + j; 1], is summed exactly in 32.32 fixed
 * point, so a voxel's point depends on its global index alone and steps
 * exactly along x; its integer part is the high word, its fraction the low
 * word's top 23 bits, and B u is added to the fraction in float (the CUDA
 * backend's frame, docs/perf.md "Sampler, round 5").  W rounds to 2^-33,
 * so a point is within 3 * 2^-33 * index of the double form (3.5e-7 voxel
 * at index 1000).  The bounds keep |p| < 2^30 and every sum in int64; the
 * test depends on the whole problem, not on the box, as long as the global
 * indices stay within 2^20. */
static int smp_fx_ok(const smp *s, const ffdp_sample_args *a, int linear)
{
	if (!linear || !s->d3 || (s->u[0] && !s->u[2]))
		return 0;
	for (int k = 0; k < 3; k++) {
		double row = fabs(a->W[4 * k]) + fabs(a->W[4 * k + 1]) + fabs(a->W[4 * k + 2]);
		if (s->lo[k] < -(1 << 20) || s->lo[k] + s->on[k] > (1 << 20) || s->mn[k] >= (1 << 28))
			return 0;
		if (!(row <= 256.0) || !(fabs(a->W[4 * k + 3]) <= 0x1p28))
			return 0;
	}
	return 1;
}

static smp smp_make(const ffdp_sample_args *a, const int64_t box[3], int linear)
{
	smp s;
	memset(&s, 0, sizeof(s));
	int sub = a->m_full[0] || a->m_full[1] || a->m_full[2];
	s.m = a->moving.p;
	for (int k = 0; k < 3; k++) {
		s.mn[k] = sub ? a->m_full[k] : a->moving.n[k];
		s.mlo[k] = sub ? a->m_lo[k] : 0;
		s.lo[k] = a->lo[k];
		s.on[k] = box[k];
	}
	s.ms[0] = 1, s.ms[1] = a->moving.n[0], s.ms[2] = a->moving.n[0] * a->moving.n[1];
	memcpy(s.mb, a->moving.n, sizeof(s.mb));
	s.mshift = s.mlo[0] + s.mlo[1] * s.ms[1] + s.mlo[2] * s.ms[2];
	s.gate[0] = a->gate[0], s.gate[1] = a->gate[1];
	s.W = a->W, s.B = a->B;
	if (a->u)
		for (int c = 0; c < a->u->ncomp; c++)
			s.u[c] = a->u->c[c];
	s.pad = a->pad;
	s.d3 = !(s.mn[2] == 1 && box[2] == 1);
	s.fx = smp_fx_ok(&s, a, linear);
	for (int k = 0; k < 12 && s.fx; k++)
		s.Wq[k] = llrint(ldexp(a->W[k], 32));
	for (int k = 0; k < 9 && s.fx; k++)
		s.Bf[k] = (float)a->B[k];
	return s;
}

/* The fixed-point affine part of row r without its x term, per axis. */
static void smp_fx_row(const smp *s, int64_t r, int64_t q[3])
{
	int64_t gy = s->lo[1] + r % s->on[1], gz = s->lo[2] + r / s->on[1];
	for (int k = 0; k < 3; k++)
		q[k] = s->Wq[4 * k + 1] * gy + s->Wq[4 * k + 2] * gz + s->Wq[4 * k + 3];
}

/* The fraction of fixed-point q in [0, 1): its low word's top 23 bits. */
TL_INLINE float smp_fx_frac(int64_t q)
{
	uint32_t b = 0x3f800000u | ((uint32_t)q >> 9);
	float l;
	memcpy(&l, &b, sizeof(l));
	return l - 1.0f;
}

/* Largest |offset| from the fixed-point base taken as it is (floorf is
 * exact far beyond); NaN goes to the low end, as the double clamps send it.
 * A point moves only where it lies over 2^21 voxels out, where both pads
 * give what they give at that distance. */
#define SMP_REACH 2097152.0f

/* Axis k of the point of global x gx in the row whose fixed-point part is
 * qr, u its displacement: the first corner's index, and the fraction in f. */
TL_INLINE int64_t smp_fx_split(const smp *s, const int64_t qr[3], int64_t gx, const float u[3], const int has_u,
			       int k, float *f)
{
	int64_t q = qr[k] + s->Wq[4 * k] * gx;
	float off = smp_fx_frac(q);
	if (has_u) {
		off = off + ((s->Bf[3 * k] * u[0] + s->Bf[3 * k + 1] * u[1]) + s->Bf[3 * k + 2] * u[2]);
		off = off > -SMP_REACH ? off : -SMP_REACH;
		off = off < SMP_REACH ? off : SMP_REACH;
	}
	float fl = floorf(off);
	*f = off - fl;
	return (q >> 32) + (int64_t)fl;
}

/* Voxel x (box index j) of the row whose fixed-point part is qr: its axes
 * in the box (tl_axis_int). */
TL_INLINE void smp_fx_axes(const smp *s, const int64_t qr[3], int64_t x, int64_t j, const int has_u,
			   const ffdp_pad pad, tl_axis ax[3])
{
	float u[3] = {0.0f, 0.0f, 0.0f}, f;
	for (int c = 0; c < 3 && has_u; c++)
		u[c] = s->u[c][j];
	for (int k = 0; k < 3; k++) {
		int64_t i0 = smp_fx_split(s, qr, s->lo[0] + x, u, has_u, k, &f);
		ax[k] = tl_axis_int(i0, f, s->mn[k], s->ms[k], pad);
		ax[k].o0 -= s->mlo[k] * s->ms[k];
		ax[k].o1 -= s->mlo[k] * s->ms[k];
	}
}

/* Row base W[:,1] gy + W[:,2] gz + W[:,3] of output row r (no z column in 2-D). */
static void smp_row_base(const smp *s, int64_t r, double base[3])
{
	double gy = (double)(s->lo[1] + r % s->on[1]), gz = s->d3 ? (double)(s->lo[2] + r / s->on[1]) : 0.0;
	for (int k = 0; k < 3; k++)
		base[k] = s->W[4 * k + 1] * gy + s->W[4 * k + 2] * gz + s->W[4 * k + 3];
}

/* Sample point of voxel j (x in the row, j its box index). */
TL_INLINE void smp_point(const smp *s, const double base[3], int64_t x, int64_t j, const int has_u,
			      double p[3])
{
	double gx = (double)(s->lo[0] + x);
	for (int k = 0; k < 3; k++)
		p[k] = base[k] + s->W[4 * k] * gx;
	if (has_u) {
		double u0 = s->u[0][j], u1 = s->u[1][j], u2 = has_u == 3 ? s->u[2][j] : 0.0;
		for (int k = 0; k < 3; k++)
			p[k] += s->B[3 * k] * u0 + s->B[3 * k + 1] * u1 + s->B[3 * k + 2] * u2;
	}
}

TL_INLINE void smp_axes(const smp *s, const double p[3], const ffdp_pad pad, const int d3, tl_axis ax[3])
{
	static const int64_t zero[3] = {0, 0, 0};
	tl_axes(p, zero, s->mn, s->ms, pad, d3, ax);
	/* whole-volume corners into the box: only the integer offsets move */
	for (int k = 0; k < (d3 ? 3 : 2); k++) {
		ax[k].o0 -= s->mlo[k] * s->ms[k];
		ax[k].o1 -= s->mlo[k] * s->ms[k];
	}
}

/* Nearest neighbour: index floor(p + 0.5), i.e. halves round up. */
TL_INLINE float smp_nearest(const smp *s, const double p[3], const ffdp_pad pad, const int d3)
{
	int64_t off = 0;
	int ok = 1;
	for (int k = 0; k < (d3 ? 3 : 2); k++) {
		double n = (double)s->mn[k], q = p[k];
		double qlo = pad == FFDP_PAD_BORDER ? 0.0 : -2.0;
		double qhi = pad == FFDP_PAD_BORDER ? n - 1.0 : n + 1.0;
		q = q > qlo ? q : qlo;
		q = q < qhi ? q : qhi;
		int64_t i = tl_floor(q + 0.5);
		ok &= (uint64_t)i < (uint64_t)s->mn[k];
		off += tl_clampi(i, s->mn[k]) * s->ms[k];
	}
	return ok ? s->m[off - s->mshift] : 0.0f;
}

/* Label with the largest summed corner weight; ties go to the smallest label.
 * Corners of weight 0 (outside with zero pad, or opposite a knot the point
 * lies on) are not candidates; none left: 0.  Labels are equal when their
 * floats are. */
TL_INLINE float smp_label(const smp *s, const tl_axis ax[3], const int d3)
{
	float lab[8], w[8];
	int k = 0;
	for (int c = 0; c < (d3 ? 2 : 1); c++)
		for (int b = 0; b < 2; b++)
			for (int a = 0; a < 2; a++, k++) {
				int64_t o = (c ? ax[2].o1 : ax[2].o0) + (b ? ax[1].o1 : ax[1].o0) +
					    (a ? ax[0].o1 : ax[0].o0);
				lab[k] = s->m[o];
				w[k] = (c ? ax[2].w1 : ax[2].w0) * ((b ? ax[1].w1 : ax[1].w0) *
								    (a ? ax[0].w1 : ax[0].w0));
			}
	float best = 0.0f, bestw = 0.0f;
	for (int i = 0; i < k; i++) {
		if (!(w[i] > 0.0f))
			continue;
		float sum = 0.0f;
		for (int j = 0; j < k; j++)
			sum += lab[j] == lab[i] ? w[j] : 0.0f;
		if (sum > bestw || (sum == bestw && lab[i] < best))
			best = lab[i], bestw = sum;
	}
	return best;
}

/* Voxels [x0, x1) of one output row.  Called with constant interp, pad, d3
 * and has_u so that each combination compiles to its own loop without
 * per-voxel tests. */
TL_INLINE void smp_row(const smp *s, int64_t r, int64_t x0, int64_t x1, float *out, int accumulate,
		       const ffdp_interp interp, const ffdp_pad pad, const int d3, const int has_u)
{
	double base[3], p[3];
	int64_t qr[3];
	tl_axis ax[3];
	int64_t nx = s->on[0], j0 = r * nx;
	float *o = out + j0;
	const int fx = interp == FFDP_INTERP_LINEAR && d3 && s->fx;
	if (fx)
		smp_fx_row(s, r, qr);
	else
		smp_row_base(s, r, base);
	for (int64_t x = x0; x < x1; x++) {
		float v;
		if (fx) {
			smp_fx_axes(s, qr, x, j0 + x, has_u, pad, ax);
			v = tl_value(s->m, &ax[0], &ax[1], &ax[2], 1);
			o[x] = accumulate ? o[x] + v : v;
			continue;
		}
		smp_point(s, base, x, j0 + x, has_u, p);
		if (interp == FFDP_INTERP_NEAREST) {
			v = smp_nearest(s, p, pad, d3);
		} else {
			smp_axes(s, p, pad, d3, ax);
			if (interp == FFDP_INTERP_LABEL)
				v = smp_label(s, ax, d3);
			else
				v = tl_value(s->m, &ax[0], &ax[1], &ax[2], d3);
		}
		o[x] = accumulate ? o[x] + v : v;
	}
}

/* Unfold the runtime options into constants, one level at a time, so that
 * each combination is its own loop; the choice is made once per row. */
TL_INLINE void smp_row_p(const smp *s, int64_t r, int64_t x0, int64_t x1, float *out, int acc,
			 ffdp_interp in, const ffdp_pad pad, const int d3, const int hu)
{
	if (in == FFDP_INTERP_LINEAR)
		smp_row(s, r, x0, x1, out, acc, FFDP_INTERP_LINEAR, pad, d3, hu);
	else if (in == FFDP_INTERP_NEAREST)
		smp_row(s, r, x0, x1, out, acc, FFDP_INTERP_NEAREST, pad, d3, hu);
	else
		smp_row(s, r, x0, x1, out, acc, FFDP_INTERP_LABEL, pad, d3, hu);
}

TL_INLINE void smp_row_u(const smp *s, int64_t r, int64_t x0, int64_t x1, float *out, int acc,
			 ffdp_interp in, ffdp_pad pad, const int d3, const int hu)
{
	if (pad == FFDP_PAD_BORDER)
		smp_row_p(s, r, x0, x1, out, acc, in, FFDP_PAD_BORDER, d3, hu);
	else
		smp_row_p(s, r, x0, x1, out, acc, in, FFDP_PAD_ZERO, d3, hu);
}

/* The scalar path: voxels [x0, x1) of row r. */
static void smp_span_any(const smp *s, int64_t r, int64_t x0, int64_t x1, float *out, int acc,
			 ffdp_interp in)
{
	if (s->d3 && s->u[2])
		smp_row_u(s, r, x0, x1, out, acc, in, s->pad, 1, 3);
	else if (s->d3 && s->u[0])
		smp_row_u(s, r, x0, x1, out, acc, in, s->pad, 1, 2);
	else if (s->d3)
		smp_row_u(s, r, x0, x1, out, acc, in, s->pad, 1, 0);
	else if (s->u[0])
		smp_row_u(s, r, x0, x1, out, acc, in, s->pad, 0, 2);
	else
		smp_row_u(s, r, x0, x1, out, acc, in, s->pad, 0, 0);
}

/* ---- the z gate -------------------------------------------------------------
 * A rarely used path (moving slabs passed around a ring of ranks): each
 * voxel's point is computed to find its z plane, and the voxels inside the
 * gate run through the ordinary path one at a time, so their bits are the
 * ungated ones. */

/* The plane a point's value starts from: its first z corner (the nearest
 * plane for NEAREST), clamped into the volume as the padded paths clamp. */
static int64_t smp_gate_plane(const smp *s, const double p[3], ffdp_interp in)
{
	double n = (double)s->mn[2], q = p[2];
	double lo = s->pad == FFDP_PAD_BORDER ? 0.0 : -2.0, hi = s->pad == FFDP_PAD_BORDER ? n - 1.0 : n + 1.0;
	q = q > lo ? q : lo; /* NaN -> lo */
	q = q < hi ? q : hi;
	return tl_clampi(tl_floor(in == FFDP_INTERP_NEAREST ? q + 0.5 : q), s->mn[2]);
}

static int smp_gated(const smp *s, int64_t r, int64_t x, ffdp_interp in)
{
	double base[3], p[3];
	int64_t j = r * s->on[0] + x;
	if (s->fx && in == FFDP_INTERP_LINEAR) {
		/* the plane the fixed-point frame reads from */
		int64_t qr[3];
		float u[3] = {0.0f, 0.0f, 0.0f}, f;
		for (int c = 0; c < 3 && s->u[0]; c++)
			u[c] = s->u[c][j];
		smp_fx_row(s, r, qr);
		int64_t z = tl_clampi(smp_fx_split(s, qr, s->lo[0] + x, u, s->u[0] != NULL, 2, &f), s->mn[2]);
		return z >= s->gate[0] && z < s->gate[1];
	}
	smp_row_base(s, r, base);
	smp_point(s, base, x, j, s->u[2] ? 3 : s->u[0] ? 2 : 0, p);
	int64_t z = smp_gate_plane(s, p, in);
	return z >= s->gate[0] && z < s->gate[1];
}

static void smp_row_gated(const smp *s, int64_t r, float *out, int acc, ffdp_interp in)
{
	for (int64_t x = 0; x < s->on[0]; x++)
		if (smp_gated(s, r, x, in))
			smp_span_any(s, r, x, x + 1, out, acc, in);
}

/* ---- AVX2 -------------------------------------------------------------------
 * Eight voxels of a row at a time in the fixed-point frame: the affine part
 * stepped exactly in 64-bit lanes, the taps in 32-bit lanes, the corners
 * read (x pairs by plain loads, runs by windows, padded groups by gathers)
 * and interpolated by cpu_trilinear8.h, with the scalar path's bits.  Only
 * where smp_fx_ok holds and M has under 2^31 voxels (32-bit offsets); the
 * backward writes gu and gW, never gM. */
#ifdef TL8_AVX2
#define SMP_AVX2 1
#define SMP_AVX2_FN TL8_FN
#define V_ADD _mm256_add_ps

/* A row's fixed-point affine part for the group of 8 at hand: voxel 0's
 * per axis, stepped exactly by 8 voxels' worth per group, and the lanes'
 * offsets from it, (0 1 4 5) in la and (2 3 6 7) in lb, so that one
 * shuffle of each pair gives the high and the low words in voxel order.
 * The running part stays in general registers, the lanes' offsets in
 * memory: fewer vector registers live across a group. */
typedef struct smp8_fx {
	int64_t q[3], step[3];
	__m256i la[3], lb[3];
	__m256 bf[9]; /* Bf broadcast, read as memory operands */
} smp8_fx;

SMP_AVX2_FN void smp8_fx_start(const smp *s, int64_t r, int64_t x, smp8_fx *f)
{
	int64_t qr[3], gx = s->lo[0] + x;
	smp_fx_row(s, r, qr);
	for (int k = 0; k < 3; k++) {
		int64_t w = s->Wq[4 * k];
		f->q[k] = qr[k] + w * gx;
		f->step[k] = 8 * w;
		f->la[k] = _mm256_setr_epi64x(0, w, 4 * w, 5 * w);
		f->lb[k] = _mm256_setr_epi64x(2 * w, 3 * w, 6 * w, 7 * w);
	}
	for (int k = 0; k < 9; k++)
		f->bf[k] = _mm256_set1_ps(s->Bf[k]);
}

/* The mask of a row's last n < 8 voxels' lanes. */
SMP_AVX2_FN __m256i smp8_tail(int64_t n)
{
	return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The next 8 voxels of the row (box index j): smp_fx_split's first
 * corners i0 and fractions f per axis; whether every cell lies inside M.
 * The sampler's domain starts at index 0.  tail (NULL: all 8): the lanes
 * inside the row (smp8_tail); the others read u as 0 and take the point
 * of their x past the row's end, which no caller stores. */
SMP_AVX2_FN int smp8_point(const smp *s, const tl8_box *b, smp8_fx *fx, int64_t j, const int has_u,
			   const __m256i *tail, __m256i i0[3], __m256 f[3])
{
	const __m256 one = _mm256_set1_ps(1.0f), reach = _mm256_set1_ps(SMP_REACH);
	__m256i out = _mm256_setzero_si256();
	__m256 u[3];
	for (int c = 0; c < 3 && has_u; c++)
		u[c] = tail ? _mm256_maskload_ps(s->u[c] + j, *tail) : _mm256_loadu_ps(s->u[c] + j);
	for (int k = 0; k < 3; k++) {
		__m256i q = _mm256_set1_epi64x(fx->q[k]);
		__m256 qa = _mm256_castsi256_ps(_mm256_add_epi64(q, fx->la[k]));
		__m256 qb = _mm256_castsi256_ps(_mm256_add_epi64(q, fx->lb[k]));
		fx->q[k] += fx->step[k];
		__m256i hi = _mm256_castps_si256(_mm256_shuffle_ps(qa, qb, _MM_SHUFFLE(3, 1, 3, 1)));
		__m256i lo = _mm256_castps_si256(_mm256_shuffle_ps(qa, qb, _MM_SHUFFLE(2, 0, 2, 0)));
		__m256 l = _mm256_castsi256_ps(_mm256_or_si256(_mm256_srli_epi32(lo, 9), _mm256_set1_epi32(0x3f800000)));
		l = _mm256_sub_ps(l, one);
		if (has_u) {
			__m256 t = _mm256_add_ps(_mm256_mul_ps(fx->bf[3 * k], u[0]), _mm256_mul_ps(fx->bf[3 * k + 1], u[1]));
			t = _mm256_add_ps(t, _mm256_mul_ps(fx->bf[3 * k + 2], u[2]));
			/* max(x, -R) is -R for NaN, as x > -R ? x : -R */
			__m256 off = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(l, t), _mm256_sub_ps(_mm256_setzero_ps(), reach)), reach);
			__m256 fl = _mm256_floor_ps(off);
			i0[k] = _mm256_add_epi32(hi, _mm256_cvttps_epi32(fl));
			f[k] = _mm256_sub_ps(off, fl);
		} else {
			i0[k] = hi, f[k] = l;
		}
		/* outside: i0 >= n - 1 as unsigned (negative i0 too) */
		out = _mm256_or_si256(out, _mm256_cmpeq_epi32(_mm256_max_epu32(i0[k], _mm256_set1_epi32(b->dn[k] - 1)), i0[k]));
	}
	return _mm256_testz_si256(out, out);
}

/* The row two above an interior group's first corner, in both planes:
 * what the next output row reads new (last read a plane of output rows
 * ago, or never), which the hardware prefetchers miss at 192^3.  Addresses
 * as integers: the row may lie past the box, where a prefetch is harmless
 * but pointer arithmetic is not defined. */
SMP_AVX2_FN void smp8_prefetch(const smp *s, const tl8_box *b, const tl8 *v)
{
	uintptr_t m = (uintptr_t)s->m + 4 * (uintptr_t)(v->o0 + 2 * (int64_t)b->nx);
	_mm_prefetch((const char *)m, _MM_HINT_T0);
	_mm_prefetch((const char *)(m + 4 * (uintptr_t)b->nxy), _MM_HINT_T0);
}

/* The next 8 voxels of the row: their weights and corners (padded where a
 * cell is not inside M), for the backward. */
SMP_AVX2_FN void smp8_load(const smp *s, const tl8_box *b, smp8_fx *fx, int64_t j, const int has_u,
			   const __m256i *tail, tl8 *v)
{
	const __m256 one = _mm256_set1_ps(1.0f);
	__m256i i0[3];
	__m256 f[3];
	if (smp8_point(s, b, fx, j, has_u, tail, i0, f)) {
		for (int k = 0; k < 3; k++) {
			v->w1[k] = f[k], v->w0[k] = _mm256_sub_ps(one, f[k]);
			v->d0[k] = _mm256_set1_ps(-1.0f), v->d1[k] = one;
		}
		tl8_inner_offsets(b, i0, v);
	} else {
		tl8_taps_int_pad(b, i0, f, s->pad, v);
	}
	tl8_gather_loads(b, s->m, v);
	if (!v->padded)
		smp8_prefetch(s, b, v);
}

/* The values of the next 8 voxels of the row: interior groups by
 * tl8_value_inner, the others padded. */
SMP_AVX2_FN __m256 smp8_value(const smp *s, const tl8_box *b, smp8_fx *fx, int64_t j, const int has_u,
			      const __m256i *tail)
{
	__m256i i0[3];
	__m256 f[3];
	tl8 v;
	if (smp8_point(s, b, fx, j, has_u, tail, i0, f)) {
		tl8_inner_offsets(b, i0, &v);
		smp8_prefetch(s, b, &v);
		return tl8_value_inner(b, s->m, &v, f);
	}
	tl8_taps_int_pad(b, i0, f, s->pad, &v);
	tl8_gather(b, s->m, &v);
	return tl8_value(&v);
}

/* The whole moving volume decides, the box's memory is read. */
static inline tl8_box smp_box(const smp *s)
{
	static const int64_t zero[3] = {0, 0, 0};
	return tl8_box_make(zero, s->mn, s->mlo, s->mb);
}

SMP_AVX2_FN void smp_row_avx2_u(const smp *s, int64_t r, float *out, const int acc, const int has_u)
{
	int64_t nx = s->on[0], j0 = r * nx, x = 0;
	tl8_box b = smp_box(s);
	smp8_fx fx;
	smp8_fx_start(s, r, 0, &fx);
	for (; x + 8 <= nx; x += 8) {
		__m256 val = smp8_value(s, &b, &fx, j0 + x, has_u, NULL);
		float *o = out + j0 + x;
		if (acc)
			val = V_ADD(_mm256_loadu_ps(o), val);
		_mm256_storeu_ps(o, val);
	}
	if (x < nx) { /* the row's last nx mod 8 voxels: one masked group */
		const __m256i tm = smp8_tail(nx - x);
		__m256 val = smp8_value(s, &b, &fx, j0 + x, has_u, &tm);
		float *o = out + j0 + x;
		if (acc)
			val = V_ADD(_mm256_maskload_ps(o, tm), val);
		_mm256_maskstore_ps(o, tm, val);
	}
}

__attribute__((noinline, target("avx2,fma"))) static void smp_row_avx2(const smp *s, int64_t r, float *out,
									  int acc)
{
	/* constant flags: one loop per case, no test per group */
	if (s->u[0] && acc)
		smp_row_avx2_u(s, r, out, 1, 1);
	else if (s->u[0])
		smp_row_avx2_u(s, r, out, 0, 1);
	else if (acc)
		smp_row_avx2_u(s, r, out, 1, 0);
	else
		smp_row_avx2_u(s, r, out, 0, 0);
}
#endif

/* 32-bit gather offsets: the whole volume's indices and the box's offsets. */
static inline int smp_fits_int32(const smp *s)
{
	return s->mn[0] * s->mn[1] * s->mn[2] < INT32_MAX;
}

/* Whether row r may take the AVX2 forward path. */
static int smp_fwd_avx2_ok(const smp *s, const ffdp_sample_args *a)
{
#ifdef SMP_AVX2
	return a->interp == FFDP_INTERP_LINEAR && s->fx && smp_fits_int32(s) && ffdp_cpu_use_avx2();
#else
	(void)s, (void)a;
	return 0;
#endif
}

ffdp_status ffdp_cpu_sample(ffdp_backend *be, const ffdp_sample_args *a, ffdp_error *err)
{
	(void)be, (void)err;
	smp s = smp_make(a, a->out.n, a->interp == FFDP_INTERP_LINEAR);
	int64_t rows = s.on[1] * s.on[2];
	int gate = s.gate[1] > s.gate[0];
	int simd = !gate && smp_fwd_avx2_ok(&s, a);
	(void)simd;
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		if (gate) {
			smp_row_gated(&s, r, a->out.p, a->accumulate, a->interp);
			continue;
		}
#ifdef SMP_AVX2
		if (simd) {
			smp_row_avx2(&s, r, a->out.p, a->accumulate);
			continue;
		}
#endif
		smp_span_any(&s, r, 0, s.on[0], a->out.p, a->accumulate, a->interp);
	}
	return FFDP_OK;
}

/* ---- backward ----------------------------------------------------------------
 * gM: a scatter to arbitrary (oblique) places, so no slab of the output owns
 * a slab of M; float atomics (a compare-and-swap loop) keep it race-free
 * without a per-thread copy of M.  Summation order, hence the last bits of
 * gM, depends on thread timing.  gW: double sums per row, added per plane
 * in row order and over planes in plane order, the same bits for any
 * thread count and for z-slabs adding their planes in order (ops.h). */

TL_INLINE void smp_scatter(float *gm, const tl_axis ax[3], int d3, float g)
{
	for (int c = 0; c < (d3 ? 2 : 1); c++)
		for (int b = 0; b < 2; b++)
			for (int a = 0; a < 2; a++) {
				float w = (c ? ax[2].w1 : ax[2].w0) * (b ? ax[1].w1 : ax[1].w0) *
					  (a ? ax[0].w1 : ax[0].w0) * g;
				int64_t o = (c ? ax[2].o1 : ax[2].o0) + (b ? ax[1].o1 : ax[1].o0) +
					    (a ? ax[0].o1 : ax[0].o0);
				if (w != 0.0f) {
#pragma omp atomic
					gm[o] += w;
				}
			}
}

typedef struct smp_grad_out {
	const float *gout;
	float *gu[3];
	int ncomp, accumulate_gu;
	float *gm;
} smp_grad_out;

/* A row's gW terms, sum_x gp_k gx and sum_x gp_k, in 8 lanes by global
 * x mod 8 (each lane in x order), so that the AVX2 path, 8 voxels a step,
 * adds in the scalar path's order. */
typedef struct smp_lanes {
	double sx[3][8], s1[3][8];
} smp_lanes;

/* Voxels [x0, x1) of one output row: gu written, gM scattered, the gW
 * terms added to L (NULL: none).  pad and d3 are constants at each call. */
TL_INLINE void smp_grad_row(const smp *s, const smp_grad_out *g, int64_t r, int64_t x0, int64_t x1,
			    smp_lanes *L, const ffdp_pad pad, const int d3)
{
	double base[3], p[3];
	int64_t qr[3];
	tl_axis ax[3];
	int64_t nx = s->on[0], j0 = r * nx;
	const int fx = d3 && s->fx;
	if (fx)
		smp_fx_row(s, r, qr);
	else
		smp_row_base(s, r, base);
	for (int64_t x = x0; x < x1; x++) {
		int64_t j = j0 + x;
		float dm[3];
		if (fx) {
			smp_fx_axes(s, qr, x, j, s->u[0] != NULL, pad, ax);
		} else {
			smp_point(s, base, x, j, s->u[2] ? 3 : s->u[0] ? 2 : 0, p);
			smp_axes(s, p, pad, d3, ax);
		}
		tl_value_grad(s->m, &ax[0], &ax[1], &ax[2], d3, dm);
		double go = g->gout[j], gp[3] = {dm[0] * go, dm[1] * go, dm[2] * go};
		double gx = (double)(s->lo[0] + x);
		int l = (int)((s->lo[0] + x) & 7);
		for (int k = 0; k < 3 && L; k++)
			L->sx[k][l] += gp[k] * gx, L->s1[k][l] += gp[k];
		float gf = g->gout[j], gq[3] = {dm[0] * gf, dm[1] * gf, dm[2] * gf};
		for (int c = 0; c < (g->gu[0] ? g->ncomp : 0); c++) {
			float v = fx ? (s->Bf[c] * gq[0] + s->Bf[3 + c] * gq[1]) + s->Bf[6 + c] * gq[2]
				     : (float)(s->B[c] * gp[0] + s->B[3 + c] * gp[1] + s->B[6 + c] * gp[2]);
			g->gu[c][j] = g->accumulate_gu ? g->gu[c][j] + v : v;
		}
		if (g->gm)
			smp_scatter(g->gm, ax, d3, g->gout[j]);
	}
}

/* Lanes l and l + 4 first, then ((0 + 1) + (2 + 3)): a fixed order. */
static double smp_lane_sum(const double v[8])
{
	double t0 = v[0] + v[4], t1 = v[1] + v[5], t2 = v[2] + v[6], t3 = v[3] + v[7];
	return (t0 + t1) + (t2 + t3);
}

/* Row r's 12 gW terms into acc (the row's W[:,0..3] partials). */
static void smp_lanes_flush(const smp *s, const smp_lanes *L, int64_t r, double acc[12])
{
	double gy = (double)(s->lo[1] + r % s->on[1]), gz = (double)(s->lo[2] + r / s->on[1]);
	for (int k = 0; k < (s->d3 ? 3 : 2); k++) {
		double sx = smp_lane_sum(L->sx[k]), s1 = smp_lane_sum(L->s1[k]);
		acc[4 * k] += sx;
		acc[4 * k + 1] += s1 * gy;
		acc[4 * k + 2] += s->d3 ? s1 * gz : 0.0;
		acc[4 * k + 3] += s1;
	}
}

/* The scalar path: voxels [x0, x1) of row r. */
static void smp_grad_span_any(const smp *s, const smp_grad_out *g, int64_t r, int64_t x0, int64_t x1,
			      smp_lanes *L)
{
	if (s->d3 && s->pad == FFDP_PAD_BORDER)
		smp_grad_row(s, g, r, x0, x1, L, FFDP_PAD_BORDER, 1);
	else if (s->d3)
		smp_grad_row(s, g, r, x0, x1, L, FFDP_PAD_ZERO, 1);
	else if (s->pad == FFDP_PAD_BORDER)
		smp_grad_row(s, g, r, x0, x1, L, FFDP_PAD_BORDER, 0);
	else
		smp_grad_row(s, g, r, x0, x1, L, FFDP_PAD_ZERO, 0);
}

#ifdef SMP_AVX2
/* gp = dM/dp gout in double for 8 voxels (two halves of 4), as the scalar
 * row forms it for gW's lanes (the product of two floats, exact); a
 * tail's lanes past the row give 0 (adding it keeps a lane's sum's
 * bits). */
SMP_AVX2_FN void smp8_gp(const smp_grad_out *g, int64_t j, const __m256 dm[3], const __m256i *tail,
			 __m256d gp[2][3])
{
	for (int h = 0; h < 2; h++) {
		const __m128i th = tail ? (h ? _mm256_extracti128_si256(*tail, 1) : _mm256_castsi256_si128(*tail))
					: _mm_set1_epi32(-1);
		__m256d go = _mm256_cvtps_pd(tail ? _mm_maskload_ps(g->gout + j + 4 * h, th)
						  : _mm_loadu_ps(g->gout + j + 4 * h));
		const __m256d keep = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(th));
		for (int k = 0; k < 3; k++) {
			gp[h][k] = _mm256_mul_pd(tl8_half_pd(dm[k], h), go);
			if (tail)
				gp[h][k] = _mm256_and_pd(gp[h][k], keep);
		}
	}
}

/* gu of 8 voxels, as the scalar row in the fixed-point frame: gq = dm
 * gout and gu_c = (B_0c gq_0 + B_1c gq_1) + B_2c gq_2, in float. */
SMP_AVX2_FN void smp8_gu(const smp8_fx *fx, const smp_grad_out *g, int64_t j, const __m256 dm[3],
			 const __m256i *tail)
{
	__m256 go = tail ? _mm256_maskload_ps(g->gout + j, *tail) : _mm256_loadu_ps(g->gout + j), gq[3];
	for (int k = 0; k < 3; k++)
		gq[k] = _mm256_mul_ps(dm[k], go);
	for (int c = 0; c < 3; c++) {
		__m256 v = _mm256_add_ps(_mm256_mul_ps(fx->bf[c], gq[0]), _mm256_mul_ps(fx->bf[3 + c], gq[1]));
		v = _mm256_add_ps(v, _mm256_mul_ps(fx->bf[6 + c], gq[2]));
		float *o = g->gu[c] + j;
		if (g->accumulate_gu)
			v = V_ADD(tail ? _mm256_maskload_ps(o, *tail) : _mm256_loadu_ps(o), v);
		if (tail)
			_mm256_maskstore_ps(o, *tail, v);
		else
			_mm256_storeu_ps(o, v);
	}
}

/* The gW lanes of 8 voxels whose first has global x gx0 = 0 mod 8. */
SMP_AVX2_FN void smp8_lanes(smp_lanes *L, double gx0, __m256d gp[2][3])
{
	for (int h = 0; h < 2; h++) {
		__m256d gx = _mm256_add_pd(_mm256_set1_pd(gx0), _mm256_setr_pd(4 * h, 4 * h + 1, 4 * h + 2, 4 * h + 3));
		for (int k = 0; k < 3; k++) {
			double *sx = L->sx[k] + 4 * h, *s1 = L->s1[k] + 4 * h;
			_mm256_storeu_pd(sx, _mm256_add_pd(_mm256_loadu_pd(sx), _mm256_mul_pd(gp[h][k], gx)));
			_mm256_storeu_pd(s1, _mm256_add_pd(_mm256_loadu_pd(s1), gp[h][k]));
		}
	}
}

/* The backward of the next 8 voxels (tail: those inside the row), box
 * index j, global x gx0. */
SMP_AVX2_FN void smp8_grad(const smp *s, const tl8_box *b, smp8_fx *fx, const smp_grad_out *g, int64_t j,
			   double gx0, const int has_u, const __m256i *tail, smp_lanes *L)
{
	tl8 v;
	__m256 dm[3];
	__m256d gp[2][3];
	smp8_load(s, b, fx, j, has_u, tail, &v);
	tl8_value_grad(&v, dm);
	if (g->gu[0])
		smp8_gu(fx, g, j, dm, tail);
	if (L) {
		smp8_gp(g, j, dm, tail, gp);
		smp8_lanes(L, gx0, gp);
	}
}

/* Groups of 8 start at a global x divisible by 8, so that lane = x mod 8. */
SMP_AVX2_FN void smp_grad_row_avx2_u(const smp *s, const smp_grad_out *g, int64_t r, smp_lanes *L,
				     const int has_u)
{
	int64_t nx = s->on[0], j0 = r * nx, x = (-s->lo[0]) & 7;
	x = x < nx ? x : nx;
	tl8_box b = smp_box(s);
	smp8_fx fx;
	smp8_fx_start(s, r, x, &fx);
	if (x > 0)
		smp_grad_span_any(s, g, r, 0, x, L);
	for (; x + 8 <= nx; x += 8)
		smp8_grad(s, &b, &fx, g, j0 + x, (double)(s->lo[0] + x), has_u, NULL, L);
	if (x < nx) { /* the row's last voxels: one masked group */
		const __m256i tm = smp8_tail(nx - x);
		smp8_grad(s, &b, &fx, g, j0 + x, (double)(s->lo[0] + x), has_u, &tm, L);
	}
}

__attribute__((noinline, target("avx2,fma"))) static void smp_grad_row_avx2(const smp *s, const smp_grad_out *g,
									   int64_t r, smp_lanes *L)
{
	if (s->u[0])
		smp_grad_row_avx2_u(s, g, r, L, 1);
	else
		smp_grad_row_avx2_u(s, g, r, L, 0);
}
#endif

/* The AVX2 backward: 3-D, u of 3 components or none, gu and gW; no gM
 * scatter. */
static int smp_grad_avx2_ok(const smp *s, const smp_grad_out *g)
{
#ifdef SMP_AVX2
	return s->fx && !g->gm && smp_fits_int32(s) && ffdp_cpu_use_avx2();
#else
	(void)s, (void)g;
	return 0;
#endif
}

ffdp_status ffdp_cpu_sample_grad(ffdp_backend *be, const ffdp_sample_grad_args *a, ffdp_error *err)
{
	(void)be;
	const ffdp_sample_args *f = a->fwd;
	const int64_t *box = a->gout.n;
	if (f->u && (f->u->n[0] != box[0] || f->u->n[1] != box[1] || f->u->n[2] != box[2]))
		return ffdp_fail(err, FFDP_ERR_ARG, "sample_grad: u and gout differ in size");
	smp s = smp_make(f, box, 1);
	smp_grad_out g = {a->gout.p, {NULL, NULL, NULL}, f->u ? f->u->ncomp : 0, a->accumulate_gu,
			  a->gM ? a->gM->p : NULL};
	if (a->gu)
		for (int c = 0; c < g.ncomp; c++)
			g.gu[c] = a->gu->c[c];
	int64_t rows = box[1] * box[2];
	/* gW: 12 sums per row (zeroed), reduced per plane below */
	double *part = a->gW || a->gW_z ? calloc((size_t)rows * 12 + 1, sizeof(double)) : NULL;
	if ((a->gW || a->gW_z) && !part)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "sample_grad: no memory for %lld row sums", (long long)rows);
	int gate = s.gate[1] > s.gate[0];
	int simd = !gate && smp_grad_avx2_ok(&s, &g);
	(void)simd;
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		smp_lanes lanes, *L = part ? &lanes : NULL;
		if (L)
			memset(L, 0, sizeof(*L));
		if (gate) {
			for (int64_t x = 0; x < s.on[0]; x++)
				if (smp_gated(&s, r, x, FFDP_INTERP_LINEAR))
					smp_grad_span_any(&s, &g, r, x, x + 1, L);
		} else {
#ifdef SMP_AVX2
			if (simd)
				smp_grad_row_avx2(&s, &g, r, L);
			else
#endif
				smp_grad_span_any(&s, &g, r, 0, s.on[0], L);
		}
		if (L)
			smp_lanes_flush(&s, L, r, part + 12 * r);
	}
	double tot[12] = {0};
	for (int64_t z = 0; z < box[2] && part; z++) {
		double pz[12] = {0};
		for (int64_t y = 0; y < box[1]; y++)
			for (int k = 0; k < 12; k++)
				pz[k] += part[12 * (z * box[1] + y) + k];
		for (int k = 0; k < 12; k++)
			tot[k] += pz[k];
		if (a->gW_z)
			memcpy(a->gW_z + 12 * z, pz, sizeof(pz));
	}
	for (int k = 0; k < 12 && a->gW; k++)
		a->gW[k] += tot[k];
	free(part);
	return FFDP_OK;
}

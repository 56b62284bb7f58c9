/* Trilinear interpolation shared by the sampler and composition.
 *
 * One axis at a time: a continuous index p (in the frame of a global grid)
 * becomes two corner offsets into a box that starts at global index off,
 * their weights, and the derivatives of the weights with respect to p.
 * The padded versions are branch-free: outside corners (zero pad) get weight
 * 0 and a clamped, always readable offset.  Points whose cell lies inside
 * the box take a shorter path with the same bits.  At an exact knot the cell
 * to the right is used (floor), which fixes the side of the one-sided
 * derivative.
 */
#ifndef FFDP_CPU_TRILINEAR_H
#define FFDP_CPU_TRILINEAR_H

#include <stdint.h>

#include "ffdp/ops.h"

/* Kernels are written once with constant flags (pad, 2-D/3-D, ...) and
 * instantiated per combination; forced inlining makes the constants fold. */
#if defined(__GNUC__)
#define TL_INLINE static inline __attribute__((always_inline))
#else
#define TL_INLINE static inline
#endif

typedef struct tl_axis {
	int64_t o0, o1; /* corner offsets (index * stride), always inside the box */
	float w0, w1;   /* weights */
	float d0, d1;   /* d(weight)/dp */
} tl_axis;

/* floor() of a value already clamped into the int64 range: truncation plus
 * a correction, which stays inline without SSE4.1. */
TL_INLINE int64_t tl_floor(double p)
{
	int64_t i = (int64_t)p;
	return i - ((double)i > p);
}

TL_INLINE int64_t tl_clampi(int64_t i, int64_t n)
{
	i = i > 0 ? i : 0;
	return i < n - 1 ? i : n - 1;
}

/* Zero pad.  Points further out than one voxel are pulled in to two voxels
 * outside (NaN too: the comparisons fail), where every corner is still
 * outside, so the result is unchanged and the conversion is defined.  The
 * floor and the fraction are taken in the global frame and only the integer
 * index is moved into the box, so a box that holds a point's corners gives
 * the same weights as the whole grid. */
TL_INLINE tl_axis tl_axis_zero(double p, int64_t off, int64_t n, int64_t stride)
{
	tl_axis a;
	double lo = (double)off - 2.0, hi = (double)(off + n) + 1.0;
	double q = p > lo ? p : lo;
	q = q < hi ? q : hi;
	int64_t g0 = tl_floor(q), i0 = g0 - off, i1 = i0 + 1;
	float f = (float)(q - (double)g0);
	float v0 = (uint64_t)i0 < (uint64_t)n ? 1.0f : 0.0f;
	float v1 = (uint64_t)i1 < (uint64_t)n ? 1.0f : 0.0f;
	a.o0 = tl_clampi(i0, n) * stride;
	a.o1 = tl_clampi(i1, n) * stride;
	a.w0 = (1.0f - f) * v0;
	a.w1 = f * v1;
	a.d0 = -v0;
	a.d1 = v1;
	return a;
}

/* Border pad: the coordinate is clamped into the box [off, off+n-1]; the
 * derivative is 0 where clamping is active (and at the last knot, whose
 * right cell is clamped: there i1 == i0 and d0 + d1 cancel). */
TL_INLINE tl_axis tl_axis_border(double p, int64_t off, int64_t n, int64_t stride)
{
	tl_axis a;
	double lo = (double)off, hi = (double)(off + n - 1);
	float in = p >= lo && p <= hi ? 1.0f : 0.0f;
	double q = p > lo ? p : lo;
	q = q < hi ? q : hi;
	int64_t g0 = tl_floor(q), i0 = g0 - off, i1 = i0 + (i0 < n - 1);
	float f = (float)(q - (double)g0);
	a.o0 = i0 * stride;
	a.o1 = i1 * stride;
	a.w0 = 1.0f - f;
	a.w1 = f;
	a.d0 = -in;
	a.d1 = in;
	return a;
}

TL_INLINE tl_axis tl_axis_make(double p, int64_t off, int64_t n, int64_t stride, ffdp_pad pad)
{
	return pad == FFDP_PAD_BORDER ? tl_axis_border(p, off, n, stride) : tl_axis_zero(p, off, n, stride);
}

/* The z axis of a 2-D problem: one plane, weight 1, no derivative. */
TL_INLINE tl_axis tl_axis_flat(void)
{
	tl_axis a = {0, 0, 1.0f, 0.0f, 0.0f, 0.0f};
	return a;
}

/* Both corners inside the box (off <= p < off + n - 1)?  The rounding of
 * p - off only moves the switch between the two paths, which agree. */
TL_INLINE int tl_inside(double p, int64_t off, int64_t n)
{
	double q = p - (double)off;
	return (q >= 0.0) & (q < (double)(n - 1));
}

/* The interior case of both pads, with their bits but a third of the work. */
TL_INLINE tl_axis tl_axis_inner(double p, int64_t off, int64_t stride)
{
	tl_axis a;
	int64_t g0 = tl_floor(p);
	float f = (float)(p - (double)g0);
	a.o0 = (g0 - off) * stride;
	a.o1 = a.o0 + stride;
	a.w0 = 1.0f - f;
	a.w1 = f;
	a.d0 = -1.0f;
	a.d1 = 1.0f;
	return a;
}

/* The taps of a point given as its first corner's index i0 (an integer,
 * however far out) and its fraction f in [0, 1), for a domain of n voxels
 * starting at index 0: tl_axis_zero's and tl_axis_border's values at
 * i0 + f, without a double (the sampler's fixed-point frame). */
TL_INLINE tl_axis tl_axis_int(int64_t i0, float f, int64_t n, int64_t stride, ffdp_pad pad)
{
	tl_axis a;
	if (pad == FFDP_PAD_BORDER) {
		int out = i0 < 0 || i0 > n - 1 || (i0 == n - 1 && f > 0.0f);
		float in = out ? 0.0f : 1.0f;
		i0 = tl_clampi(i0, n);
		f = out ? 0.0f : f;
		a.o0 = i0 * stride;
		a.o1 = (i0 + (i0 < n - 1)) * stride;
		a.w0 = 1.0f - f;
		a.w1 = f;
		a.d0 = -in;
		a.d1 = in;
		return a;
	}
	float v0 = (uint64_t)i0 < (uint64_t)n ? 1.0f : 0.0f;
	float v1 = (uint64_t)(i0 + 1) < (uint64_t)n ? 1.0f : 0.0f;
	a.o0 = tl_clampi(i0, n) * stride;
	a.o1 = tl_clampi(i0 + 1, n) * stride;
	a.w0 = (1.0f - f) * v0;
	a.w1 = f * v1;
	a.d0 = -v0;
	a.d1 = v1;
	return a;
}

/* The axes of point p in a box at off of size n, strides st: one test per
 * point picks the interior path, used by most points, or the padded one. */
TL_INLINE void tl_axes(const double p[3], const int64_t off[3], const int64_t n[3], const int64_t st[3],
		       const ffdp_pad pad, const int d3, tl_axis ax[3])
{
	int in = tl_inside(p[0], off[0], n[0]) & tl_inside(p[1], off[1], n[1]);
	if (d3)
		in &= tl_inside(p[2], off[2], n[2]);
	if (in) {
		for (int k = 0; k < (d3 ? 3 : 2); k++)
			ax[k] = tl_axis_inner(p[k], off[k], st[k]);
	} else {
		for (int k = 0; k < (d3 ? 3 : 2); k++)
			ax[k] = tl_axis_make(p[k], off[k], n[k], st[k], pad);
	}
	if (!d3)
		ax[2] = tl_axis_flat();
}

/* M(p).  d3 is a compile-time constant at every call site. */
TL_INLINE float tl_value(const float *m, const tl_axis *x, const tl_axis *y, const tl_axis *z, int d3)
{
	const float *r00 = m + y->o0 + z->o0, *r10 = m + y->o1 + z->o0;
	float v0 = y->w0 * (x->w0 * r00[x->o0] + x->w1 * r00[x->o1]) +
		   y->w1 * (x->w0 * r10[x->o0] + x->w1 * r10[x->o1]);
	if (!d3)
		return v0;
	const float *r01 = m + y->o0 + z->o1, *r11 = m + y->o1 + z->o1;
	float v1 = y->w0 * (x->w0 * r01[x->o0] + x->w1 * r01[x->o1]) +
		   y->w1 * (x->w0 * r11[x->o0] + x->w1 * r11[x->o1]);
	return z->w0 * v0 + z->w1 * v1;
}

/* M(p) and dM/dp (g[2] = 0 in 2-D). */
TL_INLINE float tl_value_grad(const float *m, const tl_axis *x, const tl_axis *y, const tl_axis *z, int d3,
				  float g[3])
{
	const float *r00 = m + y->o0 + z->o0, *r10 = m + y->o1 + z->o0;
	float a0 = r00[x->o0], a1 = r00[x->o1], b0 = r10[x->o0], b1 = r10[x->o1];
	float e0 = x->w0 * a0 + x->w1 * a1, e1 = x->w0 * b0 + x->w1 * b1;
	float gx0 = x->d0 * a0 + x->d1 * a1, gx1 = x->d0 * b0 + x->d1 * b1;
	float v0 = y->w0 * e0 + y->w1 * e1;
	float gx = y->w0 * gx0 + y->w1 * gx1, gy = y->d0 * e0 + y->d1 * e1;
	if (!d3) {
		g[0] = gx, g[1] = gy, g[2] = 0.0f;
		return v0;
	}
	const float *r01 = m + y->o0 + z->o1, *r11 = m + y->o1 + z->o1;
	float c0 = r01[x->o0], c1 = r01[x->o1], f0 = r11[x->o0], f1 = r11[x->o1];
	float e2 = x->w0 * c0 + x->w1 * c1, e3 = x->w0 * f0 + x->w1 * f1;
	float hx0 = x->d0 * c0 + x->d1 * c1, hx1 = x->d0 * f0 + x->d1 * f1;
	float v1 = y->w0 * e2 + y->w1 * e3;
	g[0] = z->w0 * gx + z->w1 * (y->w0 * hx0 + y->w1 * hx1);
	g[1] = z->w0 * gy + z->w1 * (y->d0 * e2 + y->d1 * e3);
	g[2] = z->d0 * v0 + z->d1 * v1;
	return z->w0 * v0 + z->w1 * v1;
}

#endif

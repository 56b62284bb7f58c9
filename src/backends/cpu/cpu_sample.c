/* The fused sampler on the CPU: out(j) = M(W [i;1] + B u(j)), i = lo + j.
 *
 * Parallel over the (z, y) rows of the output box.  p is evaluated per voxel
 * from the global index, p = rowbase + gx W[:,0] (+ B u): one multiply more
 * than an increment p += W[:,0], but independent of where the box starts, so
 * a shard reproduces the matching part of the full output bit for bit.
 * One test per point picks the interior path or the branch-free padded one
 * (cpu_trilinear.h); they give the same bits.
 *
 * Floor (bytes that must move per output voxel): forward 4 written (+4 read
 * when accumulating) + 12 of u (8 in 2-D) + ~4 of M when its footprint stays
 * in cache between neighbouring rows: 20 B with u, 8 B without.  Backward:
 * gout 4 + u 12 + gu 12 written (+12 read when accumulating) + M 4 = 32 B;
 * gM adds a scatter of 8 atomic updates per voxel.
 */
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "cpu_ops.h"
#include "cpu_trilinear.h"

typedef struct smp {
	const float *m;
	int64_t mn[3], ms[3]; /* moving size and strides */
	const double *W, *B;
	const float *u[3];    /* on the output box; u[0] NULL: no field, u[2] NULL: 2 components */
	int64_t lo[3], on[3]; /* output box */
	ffdp_pad pad;
	int d3;               /* 0: 2-D problem, the z row and column of W and B are ignored */
} smp;

static smp smp_make(const ffdp_sample_args *a, const int64_t box[3])
{
	smp s;
	memset(&s, 0, sizeof(s));
	s.m = a->moving.p;
	for (int k = 0; k < 3; k++) {
		s.mn[k] = a->moving.n[k];
		s.lo[k] = a->lo[k];
		s.on[k] = box[k];
	}
	s.ms[0] = 1, s.ms[1] = s.mn[0], s.ms[2] = s.mn[0] * s.mn[1];
	s.W = a->W, s.B = a->B;
	if (a->u)
		for (int c = 0; c < a->u->ncomp; c++)
			s.u[c] = a->u->c[c];
	s.pad = a->pad;
	s.d3 = !(s.mn[2] == 1 && box[2] == 1);
	return s;
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
	return ok ? s->m[off] : 0.0f;
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

/* One output row.  Called with constant interp, pad, d3 and has_u so that
 * each combination compiles to its own loop without per-voxel tests. */
TL_INLINE void smp_row(const smp *s, int64_t r, float *out, int accumulate, const ffdp_interp interp,
			   const ffdp_pad pad, const int d3, const int has_u)
{
	double base[3], p[3];
	tl_axis ax[3];
	int64_t nx = s->on[0], j0 = r * nx;
	float *o = out + j0;
	smp_row_base(s, r, base);
	for (int64_t x = 0; x < nx; x++) {
		float v;
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
TL_INLINE void smp_row_p(const smp *s, int64_t r, float *out, int acc, ffdp_interp in, const ffdp_pad pad,
			 const int d3, const int hu)
{
	if (in == FFDP_INTERP_LINEAR)
		smp_row(s, r, out, acc, FFDP_INTERP_LINEAR, pad, d3, hu);
	else if (in == FFDP_INTERP_NEAREST)
		smp_row(s, r, out, acc, FFDP_INTERP_NEAREST, pad, d3, hu);
	else
		smp_row(s, r, out, acc, FFDP_INTERP_LABEL, pad, d3, hu);
}

TL_INLINE void smp_row_u(const smp *s, int64_t r, float *out, int acc, ffdp_interp in, ffdp_pad pad,
			 const int d3, const int hu)
{
	if (pad == FFDP_PAD_BORDER)
		smp_row_p(s, r, out, acc, in, FFDP_PAD_BORDER, d3, hu);
	else
		smp_row_p(s, r, out, acc, in, FFDP_PAD_ZERO, d3, hu);
}

static void smp_row_any(const smp *s, int64_t r, float *out, int acc, ffdp_interp in)
{
	if (s->d3 && s->u[2])
		smp_row_u(s, r, out, acc, in, s->pad, 1, 3);
	else if (s->d3 && s->u[0])
		smp_row_u(s, r, out, acc, in, s->pad, 1, 2);
	else if (s->d3)
		smp_row_u(s, r, out, acc, in, s->pad, 1, 0);
	else if (s->u[0])
		smp_row_u(s, r, out, acc, in, s->pad, 0, 2);
	else
		smp_row_u(s, r, out, acc, in, s->pad, 0, 0);
}

ffdp_status ffdp_cpu_sample(ffdp_backend *be, const ffdp_sample_args *a, ffdp_error *err)
{
	(void)be, (void)err;
	smp s = smp_make(a, a->out.n);
	int64_t rows = s.on[1] * s.on[2];
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++)
		smp_row_any(&s, r, a->out.p, a->accumulate, a->interp);
	return FFDP_OK;
}

/* ---- backward ----------------------------------------------------------------
 * gM: a scatter to arbitrary (oblique) places, so no slab of the output owns
 * a slab of M; float atomics (a compare-and-swap loop) keep it race-free
 * without a per-thread copy of M.  Summation order, hence the last bits of
 * gM, depends on thread timing.  gW: per-thread double sums reduced in thread
 * order, so it is deterministic for a given thread count. */

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

/* One output row: gu written, gM scattered, this row's gW terms added to
 * acc.  pad and d3 are constants at each call. */
TL_INLINE void smp_grad_row(const smp *s, const smp_grad_out *g, int64_t r, double acc[12], const ffdp_pad pad,
			    const int d3)
{
	double base[3], p[3], sx[3] = {0, 0, 0}, s1[3] = {0, 0, 0};
	tl_axis ax[3];
	int64_t nx = s->on[0], j0 = r * nx;
	smp_row_base(s, r, base);
	for (int64_t x = 0; x < nx; x++) {
		int64_t j = j0 + x;
		float dm[3];
		smp_point(s, base, x, j, s->u[2] ? 3 : s->u[0] ? 2 : 0, p);
		smp_axes(s, p, pad, d3, ax);
		tl_value_grad(s->m, &ax[0], &ax[1], &ax[2], d3, dm);
		double go = g->gout[j], gp[3] = {dm[0] * go, dm[1] * go, dm[2] * go};
		double gx = (double)(s->lo[0] + x);
		for (int k = 0; k < 3; k++)
			sx[k] += gp[k] * gx, s1[k] += gp[k];
		for (int c = 0; c < (g->gu[0] ? g->ncomp : 0); c++) {
			float v = (float)(s->B[c] * gp[0] + s->B[3 + c] * gp[1] + s->B[6 + c] * gp[2]);
			g->gu[c][j] = g->accumulate_gu ? g->gu[c][j] + v : v;
		}
		if (g->gm)
			smp_scatter(g->gm, ax, d3, g->gout[j]);
	}
	double gy = (double)(s->lo[1] + r % s->on[1]), gz = (double)(s->lo[2] + r / s->on[1]);
	for (int k = 0; k < (d3 ? 3 : 2); k++) {
		acc[4 * k] += sx[k];
		acc[4 * k + 1] += s1[k] * gy;
		acc[4 * k + 2] += d3 ? s1[k] * gz : 0.0;
		acc[4 * k + 3] += s1[k];
	}
}

static void smp_grad_row_any(const smp *s, const smp_grad_out *g, int64_t r, double acc[12])
{
	if (s->d3 && s->pad == FFDP_PAD_BORDER)
		smp_grad_row(s, g, r, acc, FFDP_PAD_BORDER, 1);
	else if (s->d3)
		smp_grad_row(s, g, r, acc, FFDP_PAD_ZERO, 1);
	else if (s->pad == FFDP_PAD_BORDER)
		smp_grad_row(s, g, r, acc, FFDP_PAD_BORDER, 0);
	else
		smp_grad_row(s, g, r, acc, FFDP_PAD_ZERO, 0);
}

ffdp_status ffdp_cpu_sample_grad(ffdp_backend *be, const ffdp_sample_grad_args *a, ffdp_error *err)
{
	(void)be;
	const ffdp_sample_args *f = a->fwd;
	const int64_t *box = a->gout.n;
	if (f->u && (f->u->n[0] != box[0] || f->u->n[1] != box[1] || f->u->n[2] != box[2]))
		return ffdp_fail(err, FFDP_ERR_ARG, "sample_grad: u and gout differ in size");
	smp s = smp_make(f, box);
	smp_grad_out g = {a->gout.p, {NULL, NULL, NULL}, f->u ? f->u->ncomp : 0, a->accumulate_gu,
			  a->gM ? a->gM->p : NULL};
	if (a->gu)
		for (int c = 0; c < g.ncomp; c++)
			g.gu[c] = a->gu->c[c];
	int nt = omp_get_max_threads();
	double *part = calloc((size_t)nt * 12, sizeof(double));
	if (!part)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "sample_grad: no memory for %d partial sums", nt);
	int64_t rows = box[1] * box[2];
#pragma omp parallel num_threads(nt)
	{
		double acc[12] = {0};
#pragma omp for schedule(static)
		for (int64_t r = 0; r < rows; r++)
			smp_grad_row_any(&s, &g, r, acc);
		memcpy(part + 12 * omp_get_thread_num(), acc, sizeof(acc));
	}
	if (a->gW)
		for (int t = 0; t < nt; t++)
			for (int k = 0; k < 12; k++)
				a->gW[k] += part[12 * t + k];
	free(part);
	return FFDP_OK;
}

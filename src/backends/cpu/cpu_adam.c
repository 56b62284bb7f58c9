/* Adam moments and the fused greedy warp step (ops.h, "optimiser").
 *
 * d = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) is recomputed from the
 * stored m and v by one float function (vectorised), so that the max_norm
 * of adam_moments bounds exactly the |d| that warp_step sees.
 *
 * IO floors (float32, 3-D; 2-D is two thirds):
 *   adam_moments            read g, m, v, write m, v       60 B/voxel
 *   warp_step, compose = 0  read m, v, u, write u          48 B/voxel
 *   warp_step, compose = 1  the same 48 B/voxel, plus the copy of each old
 *                           plane into the ring (24 B/voxel unless the ring
 *                           stays in cache), plus 24 B/voxel to measure the
 *                           reach when no max_norm is given.
 *
 * In-place composition u <- delta + u o (Id + C delta): each thread updates
 * a slab of slices (z planes, or y rows in 2-D) in increasing order.  While
 * it writes slice s it reads old u at slices s - K .. s + F + 1 (K, F the
 * largest backward and forward reach of C delta along the slice axis): its
 * own slices <= s from a ring of the K + 1 old slices it overwrote last,
 * its own slices > s from u (not yet written), and its neighbours' from
 * halo copies taken before the one barrier, so threads never wait on each
 * other per slice.  Every voxel reads the same old values whatever the
 * slabs, so the thread count does not change the bits.
 *
 * The trilinear sampling here duplicates the sampler's rules (cpu_sample.c)
 * because it must read two sources (ring and u); voxels whose corners are
 * all inside take a short path, eight at a time as a stencil with AVX2.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../../ops/bf16_moments.h"
#include "cpu_ops.h"
#include "cpu_tristencil.h"
#include "ffdp/volume.h"

typedef struct adam_k {
	float b1, b2, ibc1, ibc2, eps;
} adam_k;

static ffdp_status adam_k_make(const ffdp_adam_opts *o, adam_k *k, ffdp_error *err)
{
	if (o->t < 1)
		return ffdp_fail(err, FFDP_ERR_ARG, "adam: step count must start at 1");
	if (!(o->beta1 >= 0.0 && o->beta1 < 1.0 && o->beta2 >= 0.0 && o->beta2 < 1.0))
		return ffdp_fail(err, FFDP_ERR_ARG, "adam: betas (%g, %g) must lie in [0, 1)", o->beta1,
				 o->beta2);
	if (!(o->eps >= 0.0))
		return ffdp_fail(err, FFDP_ERR_ARG, "adam: eps %g is negative", o->eps);
	k->b1 = (float)o->beta1;
	k->b2 = (float)o->beta2;
	k->ibc1 = (float)(1.0 / (1.0 - pow(o->beta1, o->t)));
	k->ibc2 = (float)(1.0 / (1.0 - pow(o->beta2, o->t)));
	k->eps = (float)o->eps;
	return FFDP_OK;
}

/* The one definition of d (float, vectorisable). */
static inline float adam_d(float m, float v, const adam_k *k)
{
	return m * k->ibc1 / (sqrtf(v * k->ibc2) + k->eps);
}

/* The stored moments: float planes, or bf16 words (w non-NULL). */
typedef struct mom_in {
	const float *m[3], *v[3];
	const uint32_t *w[3];
} mom_in;

static void mom_in_make(mom_in *mo, const ffdp_vec *m, const ffdp_vec *v, const ffdp_adam_opts *o)
{
	memset(mo, 0, sizeof(*mo));
	for (int c = 0; c < m->ncomp; c++)
		if (o->store == FFDP_MOMENTS_BF16)
			mo->w[c] = (const uint32_t *)m->c[c];
		else
			mo->m[c] = m->c[c], mo->v[c] = v->c[c];
}

/* d of component c at voxels i0 .. i0 + n - 1. */
static inline void adam_d_run(const adam_k *k, const mom_in *mo, int c, int64_t i0, float *restrict d, int64_t n)
{
	if (mo->w[c]) {
		const uint32_t *restrict w = mo->w[c] + i0;
		for (int64_t i = 0; i < n; i++)
			d[i] = adam_d(ffdp_bm_m(w[i]), ffdp_bm_v(w[i]), k);
		return;
	}
	const float *restrict m = mo->m[c] + i0, *restrict v = mo->v[c] + i0;
	for (int64_t i = 0; i < n; i++)
		d[i] = adam_d(m[i], v[i], k);
}

/* ---- moments ----------------------------------------------------------------- */

enum { AD_BLOCK = 256 };

/* One component of a block: update m and v, add d^2 to s. */
static inline void moments_run(const adam_k *k, const float *restrict g, float *restrict m, float *restrict v,
			       float *restrict s, int64_t n)
{
	const float b1 = k->b1, b2 = k->b2, a1 = 1.0f - b1, a2 = 1.0f - b2;
	for (int64_t i = 0; i < n; i++) {
		float gi = g[i];
		float mi = b1 * m[i] + a1 * gi, vi = b2 * v[i] + a2 * gi * gi;
		m[i] = mi;
		v[i] = vi;
		float d = adam_d(mi, vi, k);
		s[i] += d * d;
	}
}

/* The same in bf16 words: d from the stored (rounded) m and v, as
 * warp_step will see them.  i0 is the block's global index. */
static inline void moments_run16(const adam_k *k, const float *restrict g, uint32_t *restrict w,
				 float *restrict s, int64_t i0, int c, int t, int64_t n)
{
	const float b1 = k->b1, b2 = k->b2, a1 = 1.0f - b1, a2 = 1.0f - b2;
	for (int64_t i = 0; i < n; i++) {
		const float gi = g[i];
		const float mi = b1 * ffdp_bm_m(w[i]) + a1 * gi, vi = b2 * ffdp_bm_v(w[i]) + a2 * gi * gi;
		const uint32_t wi = ffdp_bm_word(mi, vi, i0 + i, c, t);
		w[i] = wi;
		const float d = adam_d(ffdp_bm_m(wi), ffdp_bm_v(wi), k);
		s[i] += d * d;
	}
}

#ifdef TS_AVX2
/* The hash's 32-bit products vectorise with AVX2 (SSE2 has none). */
__attribute__((target("avx2,fma"))) static void moments_run16_avx2(const adam_k *k, const float *restrict g,
								   uint32_t *restrict w, float *restrict s,
								   int64_t i0, int c, int t, int64_t n)
{
	moments_run16(k, g, w, s, i0, c, t, n);
}
#endif

ffdp_status ffdp_cpu_adam_moments(ffdp_backend *be, ffdp_vec g, ffdp_vec m, ffdp_vec v, const ffdp_adam_opts *o,
				  double *max_norm, ffdp_error *err)
{
	(void)be;
	adam_k k;
	ffdp_status st = adam_k_make(o, &k, err);
	if (st)
		return st;
	const int64_t nv = g.n[0] * g.n[1] * g.n[2], nb = (nv + AD_BLOCK - 1) / AD_BLOCK;
	const int bf16 = o->store == FFDP_MOMENTS_BF16;
	int simd = 0;
#ifdef TS_AVX2
	simd = ffdp_cpu_use_avx2();
#endif
	float mx = 0.0f;
	int bad = 0;
#pragma omp parallel for schedule(static) reduction(max : mx) reduction(| : bad)
	for (int64_t b = 0; b < nb; b++) {
		const int64_t i0 = b * AD_BLOCK, n = nv - i0 < AD_BLOCK ? nv - i0 : AD_BLOCK;
		float s[AD_BLOCK] = {0};
		for (int c = 0; c < g.ncomp; c++) {
			if (!bf16) {
				moments_run(&k, g.c[c] + i0, m.c[c] + i0, v.c[c] + i0, s, n);
				continue;
			}
			uint32_t *w = (uint32_t *)m.c[c] + i0;
#ifdef TS_AVX2
			if (simd) {
				moments_run16_avx2(&k, g.c[c] + i0, w, s, o->index0 + i0, c, o->t, n);
				continue;
			}
#endif
			(void)simd;
			moments_run16(&k, g.c[c] + i0, w, s, o->index0 + i0, c, o->t, n);
		}
		for (int64_t i = 0; i < n; i++) {
			bad |= !isfinite(s[i]);
			mx = s[i] > mx ? s[i] : mx;
		}
	}
	const double mn = bad ? NAN : sqrt((double)mx);
	if (max_norm)
		*max_norm = mn;
	if (o->state) {
		o->state->max_norm = mn;
		o->state->fault |= bad;
	}
	return FFDP_OK;
}

/* One half of the words of a plane to float, or float into it. */
ffdp_status ffdp_cpu_moments_half(ffdp_backend *be, ffdp_img words, int half, ffdp_img x, int put, ffdp_error *err)
{
	(void)be, (void)err;
	const int64_t nv = x.n[0] * x.n[1] * x.n[2];
	uint32_t *restrict w = (uint32_t *)words.p;
	float *restrict f = x.p;
	const uint32_t keep = half ? 0xffff0000u : 0x0000ffffu;
	const int sh = half ? 0 : 16;
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < nv; i++) {
		if (put)
			w[i] = (w[i] & keep) | ffdp_bm_rne(f[i]) << sh;
		else
			f[i] = half ? ffdp_bm_v(w[i]) : ffdp_bm_m(w[i]);
	}
	return FFDP_OK;
}

/* ---- warp step ---------------------------------------------------------------- */

enum { WS_CHUNK = 256 }; /* voxels of a row handled together */

typedef struct ws_geom {
	int64_t n[3];
	int nc;
	int sa;            /* slice axis: 2 (z) in 3-D, 1 (y) in 2-D */
	int64_t ns, slice; /* slices, voxels per slice */
	int64_t nrow, nch; /* rows per slice (ny in 3-D, 1 in 2-D), chunks per row */
	double C[3][3];    /* 2-D: the z row and column are zero */
	double step;
	adam_k k;
	ffdp_pad pad;
} ws_geom;

static void ws_geom_make(ws_geom *g, const ffdp_vec *u, const ffdp_warp_step_opts *o, const adam_k *k)
{
	for (int a = 0; a < 3; a++)
		g->n[a] = u->n[a];
	g->nc = u->ncomp;
	g->sa = g->nc == 3 ? 2 : 1;
	g->ns = g->n[g->sa];
	g->slice = g->nc == 3 ? g->n[0] * g->n[1] : g->n[0];
	g->nrow = g->nc == 3 ? g->n[1] : 1;
	g->nch = (g->n[0] + WS_CHUNK - 1) / WS_CHUNK;
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			g->C[r][c] = r < g->nc && c < g->nc ? o->C[3 * r + c] : 0.0;
	g->step = o->step;
	g->k = *k;
	g->pad = o->pad;
}

/* A run of voxels along x: first index, count, d per component, and per
 * axis the index offset o = C delta split into floor and fraction.  o is
 * computed in one place so that the reach pass and the composition agree
 * to the bit.  All loops here vectorise. */
typedef struct ws_run {
	int64_t i0, n;
	float d[3][WS_CHUNK];
	float o[3][WS_CHUNK], f[3][WS_CHUNK];
	int32_t io[3][WS_CHUNK];
} ws_run;

/* Offsets beyond +-2^20 voxels (or NaN) are clamped here; such voxels fall
 * outside every box and take the slow path, which reads o itself. */
#define WS_OFF_MAX 1048576.0f

static inline void ws_offsets(const ws_geom *g, ws_run *r, const int round_insn)
{
	const int64_t n = r->n;
	const float *d0 = r->d[0], *d1 = r->d[1], *d2 = r->d[2];
	for (int a = 0; a < g->nc; a++) {
		const float c0 = (float)(g->C[a][0] * g->step), c1 = (float)(g->C[a][1] * g->step);
		const float c2 = (float)(g->C[a][2] * g->step);
		float *restrict o = r->o[a], *restrict f = r->f[a];
		int32_t *restrict io = r->io[a];
		if (g->nc == 3)
			for (int64_t k = 0; k < n; k++)
				o[k] = c0 * d0[k] + c1 * d1[k] + c2 * d2[k];
		else
			for (int64_t k = 0; k < n; k++)
				o[k] = c0 * d0[k] + c1 * d1[k];
		for (int64_t k = 0; k < n; k++) {
			float q = o[k] > -WS_OFF_MAX ? o[k] : -WS_OFF_MAX;
			q = q < WS_OFF_MAX ? q : WS_OFF_MAX;
			/* floor: the same value either way; each vectorises on its ISA */
			const float t = (float)(int32_t)q;
			const float fl = round_insn ? __builtin_floorf(q) : t - (float)(q < t);
			io[k] = (int32_t)fl;
			f[k] = q - fl;
		}
	}
}

/* Chunk t of slice s (t < nrow * nch); returns the x of its first voxel
 * and its row (3-D) in *y.  round_insn: the ISA has a floor instruction. */
static inline int64_t ws_run_load(const ws_geom *g, const mom_in *mo, int64_t s, int64_t t,
				  int64_t *y, ws_run *r, const int round_insn)
{
	int64_t row = t / g->nch, x0 = (t % g->nch) * WS_CHUNK;
	*y = row;
	r->i0 = s * g->slice + row * g->n[0] + x0;
	r->n = g->n[0] - x0 < WS_CHUNK ? g->n[0] - x0 : WS_CHUNK;
	for (int c = 0; c < g->nc; c++)
		adam_d_run(&g->k, mo, c, r->i0, r->d[c], r->n);
	ws_offsets(g, r, round_insn);
	return x0;
}

/* Trilinear taps along one axis of size n (same rules as the sampler:
 * BORDER clamps the coordinate, ZERO drops corners outside).  Indices are
 * always inside [0, n - 1]; a dropped corner has weight 0. */
static inline void ws_taps(double q, int64_t n, ffdp_pad pad, int64_t i[2], double w[2])
{
	if (pad == FFDP_PAD_BORDER) {
		const double hi = (double)(n - 1);
		q = q > 0.0 ? q : 0.0; /* NaN -> 0: memory stays safe */
		q = q < hi ? q : hi;
		int64_t a = (int64_t)q;
		if (a > n - 2)
			a = n > 1 ? n - 2 : 0;
		double f = n > 1 ? q - (double)a : 0.0;
		i[0] = a, i[1] = n > 1 ? a + 1 : a;
		w[0] = 1.0 - f, w[1] = f;
		return;
	}
	q = q > -2.0 ? q : -2.0;
	q = q < (double)(n + 1) ? q : (double)(n + 1);
	int64_t a = (int64_t)q;
	a -= q < (double)a; /* floor */
	double f = q - (double)a;
	w[0] = a >= 0 && a < n ? 1.0 - f : 0.0;
	w[1] = a + 1 >= 0 && a + 1 < n ? f : 0.0;
	i[0] = a < 0 ? 0 : (a >= n ? n - 1 : a);
	i[1] = a + 1 < 0 ? 0 : (a + 1 >= n ? n - 1 : a + 1);
}

/* Largest backward and forward reach, max(0, -(C delta)_sa) and
 * max(0, (C delta)_sa), over the field. */
static void ws_reach(const ws_geom *g, const mom_in *mo, double *back, double *fwd)
{
	double mb = 0.0, mf = 0.0;
#pragma omp parallel for schedule(static) reduction(max : mb, mf)
	for (int64_t t = 0; t < g->ns * g->nrow * g->nch; t++) {
		ws_run r;
		int64_t y, per = g->nrow * g->nch;
		ws_run_load(g, mo, t / per, t % per, &y, &r, 0);
		const float *os = r.o[g->sa];
		for (int64_t k = 0; k < r.n; k++) {
			mb = -os[k] > mb ? -(double)os[k] : mb;
			mf = os[k] > mf ? (double)os[k] : mf;
		}
	}
	*back = mb, *fwd = mf;
}

/* A thread's copies of old slices: K + 1 ring slots (its own last
 * overwritten slices, slice st in slot (st - a) % (K + 1)), then K below
 * its slab and F + 1 above it.  Component c, slot t at
 * p + (c * nslot + t) * slice. */
typedef struct ws_slab {
	int64_t K, F, nslot;
} ws_slab;

/* Where old slice st lives while slice cur of slab [a, b) is written. */
typedef struct ws_slices {
	const float *u[3], *buf[3];
	int64_t a, b, cur, K, cap, slot, lo0, hi0, slice;
	int64_t oldest, newest; /* the slices that may be read */
} ws_slices;

static void ws_slices_make(ws_slices *w, const ws_geom *g, const ffdp_vec *u, const ws_slab *sl, float *p,
			   int64_t a, int64_t b)
{
	memset(w, 0, sizeof(*w));
	for (int c = 0; c < g->nc; c++) {
		w->u[c] = u->c[c];
		w->buf[c] = p + (int64_t)c * sl->nslot * g->slice;
	}
	w->a = a, w->b = b, w->K = sl->K, w->cap = sl->K + 1;
	w->lo0 = sl->K + 1, w->hi0 = 2 * sl->K + 1;
	w->slice = g->slice;
}

static void ws_slices_at(ws_slices *w, const ws_geom *g, const ws_slab *sl, int64_t cur)
{
	w->cur = cur;
	w->slot = (cur - w->a) % w->cap;
	w->oldest = cur - sl->K > 0 ? cur - sl->K : 0;
	w->newest = cur + sl->F + 1 < g->ns - 1 ? cur + sl->F + 1 : g->ns - 1;
}

/* Slice st (in [oldest, newest]) as a component table, and the offset of
 * in-slice position off within it. */
static inline const float *const *ws_where(const ws_slices *w, int64_t st, int64_t off, int64_t *o)
{
	if (st > w->cur && st < w->b) { /* own, not yet overwritten */
		*o = st * w->slice + off;
		return w->u;
	}
	int64_t slot;
	if (st >= w->b) {
		slot = w->hi0 + (st - w->b);
	} else if (st >= w->a) {
		slot = w->slot - (w->cur - st); /* (st - a) % cap, without a division */
		slot += slot < 0 ? w->cap : 0;
	} else {
		slot = w->lo0 + (st - (w->a - w->K));
	}
	*o = slot * w->slice + off;
	return w->buf;
}

/* Any voxel: pads, clamping, and a slice beyond the reach (then the nearest
 * one held is read and 1 returned).  out[c] = sampled old u. */
static int ws_sample_slow(const ws_geom *g, const ws_slices *w, const double q[3], double out[3])
{
	/* axes: x, the other in-slice axis (y in 3-D, the empty z in 2-D), the slice axis */
	const int other = g->sa == 2 ? 1 : 2;
	const int64_t stride2 = g->sa == 2 ? g->n[0] : 0;
	int64_t ix[2], i2[2], is[2];
	double wx[2], w2[2], wsl[2];
	ws_taps(q[0], g->n[0], g->pad, ix, wx);
	ws_taps(q[other], g->n[other], g->pad, i2, w2);
	ws_taps(q[g->sa], g->n[g->sa], g->pad, is, wsl);
	int bad = 0;
	for (int e = 0; e < 2; e++)
		if (is[e] < w->oldest || is[e] > w->newest) {
			bad |= wsl[e] != 0.0;
			is[e] = is[e] < w->oldest ? w->oldest : w->newest;
		}
	int64_t o[2];
	const float *const *b[2] = {ws_where(w, is[0], 0, &o[0]), ws_where(w, is[1], 0, &o[1])};
	for (int c = 0; c < g->nc; c++) {
		double acc = 0.0;
		for (int e = 0; e < 2; e++)
			for (int e2 = 0; e2 < 2; e2++) {
				const float *row = b[e][c] + o[e] + i2[e2] * stride2;
				acc += wsl[e] * w2[e2] * (wx[0] * row[ix[0]] + wx[1] * row[ix[1]]);
			}
		out[c] = acc;
	}
	return bad;
}

/* Voxel k of run r (chunk of slice s, row y, first x x0; ys the y index
 * of the run): its new u.  Returns 1 if it needed a slice beyond the reach.
 * Voxels whose 8 corners are all inside the box and the reach (where both
 * pads agree) take a short path. */
static inline __attribute__((always_inline)) int ws_voxel(const ws_geom *g, ffdp_vec *u, const ws_slices *wp,
							   const ws_run *r, int64_t s, int64_t y, int64_t ys,
							   int64_t x0, int64_t k)
{
	const int64_t nx = g->n[0];
	const ws_slices *w = wp;
	const int sa = g->sa;
	const int64_t x = x0 + k;
	const int64_t ax = x + r->io[0][k], as = s + r->io[sa][k], ay = y + r->io[1][k];
	float val[3];
	int bad = 0;
	int fast = ax >= 0 && ax < nx - 1 && as >= w->oldest && as < w->newest;
	if (g->nc == 3)
		fast &= ay >= 0 && ay < g->n[1] - 1;
	if (!fast) {
		/* q = i + o, as the reach pass bounds it */
		double q[3] = {(double)x + r->o[0][k], (double)ys + r->o[1][k],
			       g->nc == 3 ? (double)s + r->o[2][k] : 0.0};
		double vd[3];
		bad |= ws_sample_slow(g, w, q, vd);
		for (int c = 0; c < g->nc; c++)
			val[c] = (float)vd[c];
	} else if (g->nc == 3) {
		const float fx = r->f[0][k], gx = 1.0f - fx, fy = r->f[1][k], gy = 1.0f - fy;
		const float fs = r->f[2][k], gs = 1.0f - fs;
		int64_t o0, o1;
		const int64_t off = ay * nx + ax;
		const float *const *b0 = ws_where(w, as, off, &o0);
		const float *const *b1 = ws_where(w, as + 1, off, &o1);
		for (int c = 0; c < 3; c++) {
			const float *p0 = b0[c] + o0, *p1 = b1[c] + o1;
			float a0 = gx * p0[0] + fx * p0[1], a1 = gx * p0[nx] + fx * p0[nx + 1];
			float c0 = gx * p1[0] + fx * p1[1], c1 = gx * p1[nx] + fx * p1[nx + 1];
			val[c] = gs * (gy * a0 + fy * a1) + fs * (gy * c0 + fy * c1);
		}
	} else {
		const float fx = r->f[0][k], gx = 1.0f - fx, fs = r->f[1][k], gs = 1.0f - fs;
		int64_t o0, o1;
		const float *const *b0 = ws_where(w, as, ax, &o0);
		const float *const *b1 = ws_where(w, as + 1, ax, &o1);
		for (int c = 0; c < 2; c++) {
			const float *p0 = b0[c] + o0, *p1 = b1[c] + o1;
			val[c] = gs * (gx * p0[0] + fx * p0[1]) + fs * (gx * p1[0] + fx * p1[1]);
		}
	}
	for (int c = 0; c < g->nc; c++)
		u->c[c][r->i0 + k] = (float)(g->step * r->d[c][k]) + val[c];
	return bad;
}

/* ---- AVX2: eight voxels of a 3-D run at a time ---------------------------------
 * Steps move a voxel less than one voxel (lr times half a voxel), so the
 * corners are among the 27 neighbours: the stencil of cpu_tristencil.h,
 * with rows from the ring or u per slice, and the scalar path's arithmetic
 * in its order (-ffp-contract=off), so the bits agree.  Groups with a lane
 * off the short path or further than a voxel go per voxel. */
#ifdef TS_AVX2
#define WS_AVX2 1

/* Lanes (bits) with offset io of -1 or 0 and base + io in [lo, hi]. */
TS_FN int ws8_ok(__m256i io, __m256i base, int64_t lo, int64_t hi)
{
	const __m256i a = _mm256_add_epi32(io, base);
	__m256i ok = _mm256_and_si256(_mm256_cmpgt_epi32(io, _mm256_set1_epi32(-2)),
				      _mm256_cmpgt_epi32(_mm256_set1_epi32(1), io));
	ok = _mm256_and_si256(ok, _mm256_cmpgt_epi32(a, _mm256_set1_epi32((int32_t)lo - 1)));
	ok = _mm256_and_si256(ok, _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)(hi + 1)), a));
	return _mm256_movemask_ps(_mm256_castsi256_ps(ok));
}

TS_FN void ws8_axis(const ws_run *r, int a, int64_t k, __m256i io, ts_axis *ax)
{
	const __m256 f = _mm256_loadu_ps(r->f[a] + k);
	const __m256 m = _mm256_castsi256_ps(_mm256_cmpeq_epi32(io, _mm256_set1_epi32(-1)));
	ts_axis_set(ax, m, _mm256_sub_ps(_mm256_set1_ps(1.0f), f), f);
}

/* Voxels k .. k + 7 (x = x0 + k, with x - 1 .. x + 8 in the row); plane[c][e]
 * is slice s - 1 + e of component c (clamped), rowoff[e] row y - 1 + e.
 * 0 (nothing written) unless all 8 qualify. */
TS_FN int ws8(const ws_geom *g, ffdp_vec *u, const ws_run *r, int64_t s, int64_t y, const ws_slices *w, int64_t x,
	      int64_t k, const float *const plane[3][3], const int64_t rowoff[3])
{
	const __m256i iox = _mm256_loadu_si256((const __m256i *)(r->io[0] + k));
	const __m256i ioy = _mm256_loadu_si256((const __m256i *)(r->io[1] + k));
	const __m256i ios = _mm256_loadu_si256((const __m256i *)(r->io[2] + k));
	const __m256i zero = _mm256_setzero_si256();
	if ((ws8_ok(iox, zero, -1, 0) & ws8_ok(ioy, _mm256_set1_epi32((int32_t)y), 0, g->n[1] - 2) &
	     ws8_ok(ios, _mm256_set1_epi32((int32_t)s), w->oldest, w->newest - 1)) != 0xff)
		return 0;
	ts_axis ax[3];
	ws8_axis(r, 0, k, iox, &ax[0]);
	ws8_axis(r, 1, k, ioy, &ax[1]);
	ws8_axis(r, 2, k, ios, &ax[2]);
	const __m256d st = _mm256_set1_pd(g->step);
	for (int c = 0; c < 3; c++) {
		const __m256 val = ts_value(plane[c], rowoff, x, &ax[0], &ax[1], &ax[2]);
		__m128 d0 = _mm256_cvtpd_ps(_mm256_mul_pd(st, _mm256_cvtps_pd(_mm_loadu_ps(r->d[c] + k))));
		__m128 d1 = _mm256_cvtpd_ps(_mm256_mul_pd(st, _mm256_cvtps_pd(_mm_loadu_ps(r->d[c] + k + 4))));
		_mm256_storeu_ps(u->c[c] + r->i0 + k, _mm256_add_ps(_mm256_set_m128(d1, d0), val));
	}
	return 1;
}

/* A 3-D chunk: the run is loaded here too, so its loops get AVX2 code. */
__attribute__((noinline, flatten, target("avx2,fma"))) static int
ws_chunk_avx2(const ws_geom *g, ffdp_vec *u, const mom_in *mo, const ws_slices *w, int64_t s,
	      int64_t t)
{
	ws_run r;
	int64_t y;
	const int64_t x0 = ws_run_load(g, mo, s, t, &y, &r, 1), nx = g->n[0];
	const ws_slices wl = *w;
	const float *plane[3][3];
	for (int e = 0; e < 3; e++) {
		int64_t st = s - 1 + e, o;
		st = st < wl.oldest || st > wl.newest ? s : st; /* lanes that need it fail ws8_ok */
		const float *const *b = ws_where(&wl, st, 0, &o);
		for (int c = 0; c < 3; c++)
			plane[c][e] = b[c] + o;
	}
	const int64_t rowoff[3] = {(y > 0 ? y - 1 : y) * nx, y * nx, (y + 1 < g->n[1] ? y + 1 : y) * nx};
	/* groups need x - 1 .. x + 8 in the row; the last one starts at kmax and
	 * may overlap the one before (u's old values come from the ring, so a
	 * voxel computed twice gets the same bits) */
	const int64_t kmax = nx - 9 - x0 < r.n - 8 ? nx - 9 - x0 : r.n - 8;
	int bad = 0;
	int64_t k = 0;
	while (k < r.n) {
		const int64_t kg = k < kmax ? k : kmax;
		if (kg >= 0 && kg + 8 > k && x0 + kg >= 1 && ws8(g, u, &r, s, y, &wl, x0 + kg, kg, plane, rowoff)) {
			k = kg + 8;
			continue;
		}
		/* one voxel at the row's start, else the failed group's (or the rest) */
		const int64_t e = x0 + kg < 1 ? k + 1 : (kg == k ? k + 8 : r.n);
		for (; k < e && k < r.n; k++)
			bad |= ws_voxel(g, u, &wl, &r, s, y, y, x0, k);
	}
	return bad;
}
#endif

/* New values of chunk t of slice s, in the block written with w; returns 1
 * if a voxel needed a slice that the ring no longer holds. */
static int ws_chunk(const ws_geom *g, ffdp_vec *u, const mom_in *mo, const ws_slices *wp,
		    int64_t s, int64_t t, int simd)
{
#ifdef WS_AVX2
	if (simd && g->nc == 3)
		return ws_chunk_avx2(g, u, mo, wp, s, t);
#endif
	(void)simd;
	ws_run r;
	int64_t y;
	const int64_t x0 = ws_run_load(g, mo, s, t, &y, &r, 0);
	int bad = 0;
	const ws_slices w = *wp;
	const int64_t ys = g->sa == 2 ? y : s;
	for (int64_t k = 0; k < r.n; k++)
		bad |= ws_voxel(g, u, &w, &r, s, y, ys, x0, k);
	return bad;
}

/* Old slice st of every component into slot t of a thread's copies. */
static void ws_keep(const ws_geom *g, const ffdp_vec *u, const ws_slab *sl, float *p, int64_t st, int64_t t)
{
	for (int c = 0; c < g->nc; c++)
		memcpy(p + (c * sl->nslot + t) * g->slice, u->c[c] + st * g->slice, (size_t)g->slice * sizeof(float));
}

/* Each thread its slab; halos copied before the one barrier.  buf holds
 * nslot * nc slices per thread. */
static int ws_compose(const ws_geom *g, ffdp_vec u, const mom_in *mo, const ws_slab *sl,
		      float *buf)
{
	const int64_t per = g->nrow * g->nch;
	const int simd = ffdp_cpu_use_avx2();
	int bad = 0;
#pragma omp parallel reduction(| : bad)
	{
		const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
		const int64_t a = g->ns * tid / nt, b = g->ns * (tid + 1) / nt;
		float *p = buf + (int64_t)tid * sl->nslot * g->nc * g->slice;
		ws_slices w;
		ws_slices_make(&w, g, &u, sl, p, a, b);
		if (a < b) {
			for (int64_t st = a - sl->K > 0 ? a - sl->K : 0; st < a; st++)
				ws_keep(g, &u, sl, p, st, w.lo0 + (st - (a - sl->K)));
			for (int64_t st = b; st <= b + sl->F && st < g->ns; st++)
				ws_keep(g, &u, sl, p, st, w.hi0 + (st - b));
		}
#pragma omp barrier
		for (int64_t s = a; s < b; s++) {
			ws_slices_at(&w, g, sl, s);
			ws_keep(g, &u, sl, p, s, w.slot);
			for (int64_t t = 0; t < per; t++)
				bad |= ws_chunk(g, &u, mo, &w, s, t, simd);
		}
	}
	return bad;
}

static inline void add_run(const adam_k *k, float step, float *restrict u, const mom_in *mo, int c, int64_t i0,
			   int64_t n)
{
	float d[AD_BLOCK];
	adam_d_run(k, mo, c, i0, d, n);
	for (int64_t i = 0; i < n; i++)
		u[i] += step * d[i];
}

static void ws_add(const ws_geom *g, ffdp_vec u, const mom_in *mo)
{
	const int64_t nv = g->n[0] * g->n[1] * g->n[2], nb = (nv + AD_BLOCK - 1) / AD_BLOCK;
	const float step = (float)g->step;
#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < nb; b++) {
		const int64_t i0 = b * AD_BLOCK, n = nv - i0 < AD_BLOCK ? nv - i0 : AD_BLOCK;
		for (int c = 0; c < g->nc; c++)
			add_run(&g->k, step, u.c[c] + i0, mo, c, i0, n);
	}
}

/* Slices read below and above the one written: K and F. */
static ffdp_status ws_slab_make(const ws_geom *g, const mom_in *mo, double max_norm,
				ws_slab *sl, ffdp_error *err)
{
	double back, fwd;
	if (max_norm > 0.0) {
		if (!isfinite(max_norm))
			return ffdp_fail(err, FFDP_ERR_ARG, "warp_step: max_norm %g is not finite", max_norm);
		const double *cs = g->C[g->sa];
		double cn = sqrt(cs[0] * cs[0] + cs[1] * cs[1] + cs[2] * cs[2]);
		/* margin: max_norm comes from a float sum of squares */
		back = fwd = fabs(g->step) * max_norm * cn * (1.0 + 1e-5);
	} else {
		ws_reach(g, mo, &back, &fwd);
	}
	back = ceil(back), fwd = ceil(fwd);
	sl->K = back < (double)(g->ns - 1) ? (int64_t)back : g->ns - 1;
	sl->F = fwd < (double)(g->ns - 1) ? (int64_t)fwd : g->ns - 1;
	sl->nslot = 2 * sl->K + sl->F + 2;
	return FFDP_OK;
}

ffdp_status ffdp_cpu_warp_step(ffdp_backend *be, ffdp_vec u, ffdp_vec m, ffdp_vec v,
			       const ffdp_warp_step_opts *oo, ffdp_error *err)
{
	(void)be;
	/* with a state: the step scaled by its max_norm, which (at least 1)
	 * also bounds |d| for the ring */
	ffdp_step_state *state = oo->adam.state;
	ffdp_warp_step_opts scaled = *oo;
	if (state) {
		const double n = fmax(1.0, state->max_norm); /* NaN -> 1 */
		scaled.step = oo->step / n, scaled.max_norm = n;
	}
	const ffdp_warp_step_opts *o = &scaled;
	adam_k k;
	ffdp_status s = adam_k_make(&o->adam, &k, err);
	if (s)
		return s;
	if (!isfinite(o->step))
		return ffdp_fail(err, FFDP_ERR_ARG, "warp_step: step %g is not finite", o->step);
	ws_geom g;
	ws_geom_make(&g, &u, o, &k);
	mom_in mo;
	mom_in_make(&mo, &m, &v, &o->adam);
	if (!o->compose) {
		ws_add(&g, u, &mo);
		return FFDP_OK;
	}
	ws_slab sl;
	if ((s = ws_slab_make(&g, &mo, o->max_norm, &sl, err)))
		return s;
	const int nt = omp_get_max_threads();
	float *buf = malloc((size_t)(nt * sl.nslot * g.slice * g.nc) * sizeof(float));
	if (!buf)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "warp_step: cannot allocate %d x %lld slices of old values", nt,
				 (long long)sl.nslot);
	int bad = ws_compose(&g, u, &mo, &sl, buf);
	free(buf);
	if (bad && state) {
		state->fault |= 2;
		return FFDP_OK;
	}
	if (bad)
		return ffdp_fail(err, FFDP_ERR_ARG,
				 "warp_step: max_norm %g is below the field's own; u was only partly updated",
				 o->max_norm);
	return FFDP_OK;
}

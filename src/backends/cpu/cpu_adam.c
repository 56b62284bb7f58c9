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
 * The trilinear sampling here applies the sampler's pad rules to the
 * integer corner (tl_axis_int) itself because it must read two sources
 * (ring and u); with AVX2, eight voxels at a time as a stencil
 * (cpu_tristencil.h), faces and row ends included, with the same bits.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../../ops/bf16_moments.h"
#include "cpu_ops.h"
#include "cpu_trilinear.h"
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
	float cs[3][3];    /* C step in float: the offsets' coefficients */
	double step;
	float stepf;       /* the step in float: u gains stepf d, as without compose */
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
	g->step = o->step, g->stepf = (float)o->step;
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			g->cs[r][c] = (float)(g->C[r][c] * g->step);
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
 * outside every box and take the pads' taps. */
#define WS_OFF_MAX 1048576.0f

/* An offset's clamp, floor and fraction (round_insn: the ISA has a floor
 * instruction; the value is the same either way). */
static inline float ws_split(float o, int32_t *io, const int round_insn)
{
	float q = o > -WS_OFF_MAX ? o : -WS_OFF_MAX;
	q = q < WS_OFF_MAX ? q : WS_OFF_MAX;
	const float t = (float)(int32_t)q;
	const float fl = round_insn ? __builtin_floorf(q) : t - (float)(q < t);
	*io = (int32_t)fl;
	return q - fl;
}

/* (C step delta)_a: one order for every path. */
static inline float ws_off(const ws_geom *g, int a, float d0, float d1, float d2)
{
	const float *c = g->cs[a];
	return g->nc == 3 ? c[0] * d0 + c[1] * d1 + c[2] * d2 : c[0] * d0 + c[1] * d1;
}

static inline void ws_offsets(const ws_geom *g, ws_run *r, const int round_insn)
{
	const int64_t n = r->n;
	const float *d0 = r->d[0], *d1 = r->d[1], *d2 = r->d[2];
	for (int a = 0; a < g->nc; a++) {
		float *restrict o = r->o[a], *restrict f = r->f[a];
		int32_t *restrict io = r->io[a];
		if (g->nc == 3)
			for (int64_t k = 0; k < n; k++)
				o[k] = ws_off(g, a, d0[k], d1[k], d2[k]);
		else
			for (int64_t k = 0; k < n; k++)
				o[k] = ws_off(g, a, d0[k], d1[k], 0.0f);
		for (int64_t k = 0; k < n; k++)
			f[k] = ws_split(o[k], &io[k], round_insn);
	}
}

/* d, and per axis the offset's floor and fraction, of voxel i alone. */
static void ws_point(const ws_geom *g, const mom_in *mo, int64_t i, float d[3], int32_t io[3], float f[3])
{
	d[2] = 0.0f, io[2] = 0, f[2] = 0.0f;
	for (int c = 0; c < g->nc; c++)
		adam_d_run(&g->k, mo, c, i, &d[c], 1);
	for (int a = 0; a < g->nc; a++)
		f[a] = ws_split(ws_off(g, a, d[0], d[1], d[2]), &io[a], 0);
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
 * p + (c * nslot + t) * sstride. */
typedef struct ws_slab {
	int64_t K, F, nslot, sstride;
} ws_slab;

/* Slots lie slice + 80 floats apart: a slice of 192^2 floats is a multiple
 * of 4 KiB, so unpadded slots put the same (y, x) of every slot in the same
 * L1 set; 80 floats (5 lines) apart, the 15 slots of a step of 3
 * components fall in different sets. */
enum { WS_SLOT_PAD = 80 };

/* Where old slice st lives while slice cur of slab [a, b) is written. */
typedef struct ws_slices {
	const float *u[3], *buf[3];
	int64_t a, b, cur, K, cap, slot, lo0, hi0, slice, sstride;
	int64_t oldest, newest; /* the slices that may be read */
} ws_slices;

static void ws_slices_make(ws_slices *w, const ws_geom *g, const ffdp_vec *u, const ws_slab *sl, float *p,
			   int64_t a, int64_t b)
{
	memset(w, 0, sizeof(*w));
	for (int c = 0; c < g->nc; c++) {
		w->u[c] = u->c[c];
		w->buf[c] = p + (int64_t)c * sl->nslot * sl->sstride;
	}
	w->a = a, w->b = b, w->K = sl->K, w->cap = sl->K + 1;
	w->lo0 = sl->K + 1, w->hi0 = 2 * sl->K + 1;
	w->slice = g->slice, w->sstride = sl->sstride;
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
	*o = slot * w->sstride + off;
	return w->buf;
}

/* Old u at voxel (x, y) of slice s moved by io + f per axis (x, y, slice
 * in 3-D; x, slice in 2-D): corners and weights by the sampler's pad rules
 * on the integer corner (tl_axis_int), the values in float in the
 * stencil's order, so that the AVX2 groups give the same bits.  Returns 1
 * if a corner of nonzero weight lies in a slice the thread no longer holds
 * (the nearest held one is read then). */
static int ws_value(const ws_geom *g, const ws_slices *w, int64_t s, int64_t y, int64_t x, const int32_t io[3],
		    const float f[3], float val[3])
{
	const tl_axis ax = tl_axis_int(x + io[0], f[0], g->n[0], 1, g->pad);
	const tl_axis az = tl_axis_int(s + io[g->sa], f[g->sa], g->ns, 1, g->pad);
	int64_t is[2] = {az.o0, az.o1}, o0, o1;
	const float wz[2] = {az.w0, az.w1};
	int bad = 0;
	for (int e = 0; e < 2; e++)
		if (is[e] < w->oldest || is[e] > w->newest) {
			bad |= wz[e] != 0.0f;
			is[e] = is[e] < w->oldest ? w->oldest : w->newest;
		}
	const float *const *b0 = ws_where(w, is[0], 0, &o0), *const *b1 = ws_where(w, is[1], 0, &o1);
	if (g->nc == 2) {
		for (int c = 0; c < 2; c++) {
			const float *p0 = b0[c] + o0, *p1 = b1[c] + o1;
			val[c] = az.w0 * (ax.w0 * p0[ax.o0] + ax.w1 * p0[ax.o1]) +
				 az.w1 * (ax.w0 * p1[ax.o0] + ax.w1 * p1[ax.o1]);
		}
		return bad;
	}
	const tl_axis ay = tl_axis_int(y + io[1], f[1], g->n[1], g->n[0], g->pad);
	for (int c = 0; c < 3; c++) {
		const float *p0 = b0[c] + o0, *p1 = b1[c] + o1;
		const float a0 = ax.w0 * p0[ay.o0 + ax.o0] + ax.w1 * p0[ay.o0 + ax.o1];
		const float a1 = ax.w0 * p0[ay.o1 + ax.o0] + ax.w1 * p0[ay.o1 + ax.o1];
		const float c0 = ax.w0 * p1[ay.o0 + ax.o0] + ax.w1 * p1[ay.o0 + ax.o1];
		const float c1 = ax.w0 * p1[ay.o1 + ax.o0] + ax.w1 * p1[ay.o1 + ax.o1];
		val[c] = az.w0 * (ay.w0 * a0 + ay.w1 * a1) + az.w1 * (ay.w0 * c0 + ay.w1 * c1);
	}
	return bad;
}

/* Voxel k of run r (chunk of slice s, row y, first x x0): its new u.
 * Returns 1 if it needed a slice beyond the reach. */
static inline int ws_voxel(const ws_geom *g, ffdp_vec *u, const ws_slices *w, const ws_run *r, int64_t s, int64_t y,
			   int64_t x0, int64_t k)
{
	const int d3 = g->nc == 3;
	const int32_t io[3] = {r->io[0][k], r->io[1][k], d3 ? r->io[2][k] : 0};
	const float f[3] = {r->f[0][k], r->f[1][k], d3 ? r->f[2][k] : 0.0f};
	float val[3];
	const int bad = ws_value(g, w, s, y, x0 + k, io, f, val);
	for (int c = 0; c < g->nc; c++)
		u->c[c][r->i0 + k] = g->stepf * r->d[c][k] + val[c];
	return bad;
}

/* ---- AVX2: eight voxels of a 3-D row at a time ----------------------------------
 * Steps move a voxel less than one voxel (lr times half a voxel), so the
 * corners are among the 27 neighbours: the stencil of cpu_tristencil.h,
 * with rows from the ring or u per slice.  d and the offsets are formed in
 * registers (ws_point's operations), the pads' taps per lane at the box's
 * faces (ws_value's), all in the scalar order (-ffp-contract=off), so the
 * bits agree.  Groups with a floor outside -1..0 or a slice not held go
 * per voxel. */
#ifdef TS_AVX2
#define WS_AVX2 1

/* A row's constants: the planes of slices s - 1 .. s + 1 per component
 * and the offsets of rows y - 1 .. y + 1 (both clamped into the box), the
 * faces it lies on (ts_faces), and whether slice s - 1 exists but is not
 * held. */
typedef struct ws8_row {
	const float *plane[3][3];
	int64_t rowoff[3], i0;
	int face[3], sback; /* face[1], face[2]: y and the slice axis */
} ws8_row;

/* d of component c at voxels i .. i + 7 (adam_d's operations). */
TS_FN __m256 ws8_d(const adam_k *k, const mom_in *mo, int c, int64_t i)
{
	__m256 m, v;
	if (mo->w[c]) {
		const __m256i w = _mm256_loadu_si256((const __m256i *)(mo->w[c] + i));
		m = _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32((int)0xffff0000u)));
		v = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
	} else {
		m = _mm256_loadu_ps(mo->m[c] + i), v = _mm256_loadu_ps(mo->v[c] + i);
	}
	const __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(v, _mm256_set1_ps(k->ibc2))), _mm256_set1_ps(k->eps));
	return _mm256_div_ps(_mm256_mul_ps(m, _mm256_set1_ps(k->ibc1)), den);
}

/* Voxels x .. x + 7 of the row (edge: TS_HEAD / TS_TAIL when they start
 * or end it, a constant at each call).  0 (nothing written) unless every
 * lane qualifies. */
TS_FN int ws8(const ws_geom *g, const ws8_row *rw, ffdp_vec *u, const mom_in *mo, int64_t x, const int edge)
{
	const int64_t i = rw->i0 + x;
	const __m256 one = _mm256_set1_ps(1.0f);
	__m256 d[3], m[3], w0[3], w1[3];
	for (int c = 0; c < 3; c++)
		d[c] = ws8_d(&g->k, mo, c, i);
	int ok = 0xff;
	for (int a = 0; a < 3; a++) {
		__m256 o = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(g->cs[a][0]), d[0]),
					 _mm256_mul_ps(_mm256_set1_ps(g->cs[a][1]), d[1]));
		o = _mm256_add_ps(o, _mm256_mul_ps(_mm256_set1_ps(g->cs[a][2]), d[2]));
		/* max(o, lo) is lo for NaN, as ws_split's o > lo ? o : lo */
		const __m256 q = _mm256_min_ps(_mm256_max_ps(o, _mm256_set1_ps(-WS_OFF_MAX)), _mm256_set1_ps(WS_OFF_MAX));
		const __m256 fl = _mm256_floor_ps(q), f = _mm256_sub_ps(q, fl);
		m[a] = _mm256_cmp_ps(fl, _mm256_set1_ps(-1.0f), _CMP_EQ_OQ);
		ok &= _mm256_movemask_ps(_mm256_or_ps(m[a], _mm256_cmp_ps(fl, _mm256_setzero_ps(), _CMP_EQ_OQ)));
		w0[a] = _mm256_sub_ps(one, f), w1[a] = f;
	}
	if (ok != 0xff || (rw->sback && _mm256_movemask_ps(m[2])))
		return 0;
	ts_faces(edge, rw->face, g->pad == FFDP_PAD_BORDER, m, w0, w1);
	ts_axis ax[3];
	for (int a = 0; a < 3; a++)
		ts_axis_set(&ax[a], m[a], w0[a], w1[a]);
	const __m256 st = _mm256_set1_ps(g->stepf);
	for (int c = 0; c < 3; c++) {
		const __m256 val = ts_value(rw->plane[c], rw->rowoff, x, &ax[0], &ax[1], &ax[2], edge);
		_mm256_storeu_ps(u->c[c] + i, _mm256_add_ps(_mm256_mul_ps(st, d[c]), val));
	}
	return 1;
}
#endif

/* Voxels [x0, x1) of row y in slice s, one at a time (3-D). */
static __attribute__((noinline)) int ws_span1(const ws_geom *g, ffdp_vec *u, const mom_in *mo, const ws_slices *w,
					       int64_t s, int64_t y, int64_t x0, int64_t x1)
{
	int bad = 0;
	for (int64_t x = x0; x < x1; x++) {
		const int64_t i = s * g->slice + y * g->n[0] + x;
		float d[3], f[3], val[3];
		int32_t io[3];
		ws_point(g, mo, i, d, io, f);
		bad |= ws_value(g, w, s, y, x, io, f, val);
		for (int c = 0; c < g->nc; c++)
			u->c[c][i] = g->stepf * d[c] + val[c];
	}
	return bad;
}

#ifdef WS_AVX2
/* Row y of slice s (3-D, at least 8 voxels): groups of 8 from x = 0, the
 * last one ending at the row's end (it may overlap the one before: old
 * values come from the ring, so a voxel computed twice gets the same bits). */
__attribute__((noinline, target("avx2,fma"))) static int ws_row_avx2(const ws_geom *g, ffdp_vec *u, const mom_in *mo,
								      const ws_slices *w, int64_t s, int64_t y)
{
	const int64_t nx = g->n[0], ny = g->n[1], xl = nx - 8;
	ws8_row rw;
	for (int e = 0; e < 3; e++) {
		int64_t st = s - 1 + e, o;
		st = st < w->oldest || st > w->newest ? s : st; /* lanes that need it are refused or at a face */
		const float *const *b = ws_where(w, st, 0, &o);
		for (int c = 0; c < 3; c++)
			rw.plane[c][e] = b[c] + o;
	}
	rw.rowoff[0] = (y > 0 ? y - 1 : y) * nx, rw.rowoff[1] = y * nx, rw.rowoff[2] = (y + 1 < ny ? y + 1 : y) * nx;
	rw.i0 = s * g->slice + y * nx;
	rw.face[0] = 0;
	rw.face[1] = (y == 0) | (y == ny - 1) << 1;
	rw.face[2] = (s == 0) | (s == g->ns - 1) << 1;
	rw.sback = s >= 1 && s - 1 < w->oldest;
	int bad = 0;
	if (nx == 8)
		return ws8(g, &rw, u, mo, 0, TS_HEAD | TS_TAIL) ? 0 : ws_span1(g, u, mo, w, s, y, 0, 8);
	if (!ws8(g, &rw, u, mo, 0, TS_HEAD))
		bad |= ws_span1(g, u, mo, w, s, y, 0, 8);
	/* the next row's new corner row (y + 2) in the three planes comes from
	 * L2 or beyond: fetch it a group ahead, one line per two groups */
	const int64_t pre = (y + 2 < ny ? y + 2 : ny - 1) * nx;
	for (int64_t x = 8; x < xl; x += 8) {
		if (!(x & 8))
			for (int c = 0; c < 3; c++)
				for (int e = 0; e < 3; e++)
					_mm_prefetch((const char *)(rw.plane[c][e] + pre + x + 16), _MM_HINT_T0);
		if (!ws8(g, &rw, u, mo, x, 0))
			bad |= ws_span1(g, u, mo, w, s, y, x, x + 8);
	}
	if (!ws8(g, &rw, u, mo, xl, TS_TAIL))
		bad |= ws_span1(g, u, mo, w, s, y, xl, nx);
	return bad;
}
#endif

/* New values of slice s, in the block written with w; returns 1 if a voxel
 * needed a slice that the ring no longer holds. */
static int ws_slice(const ws_geom *g, ffdp_vec *u, const mom_in *mo, const ws_slices *w, int64_t s, int simd)
{
	int bad = 0;
#ifdef WS_AVX2
	if (simd && g->nc == 3 && g->n[0] >= 8) {
		for (int64_t y = 0; y < g->nrow; y++)
			bad |= ws_row_avx2(g, u, mo, w, s, y);
		return bad;
	}
#endif
	(void)simd;
	for (int64_t t = 0; t < g->nrow * g->nch; t++) {
		ws_run r;
		int64_t y;
		const int64_t x0 = ws_run_load(g, mo, s, t, &y, &r, 0);
		for (int64_t k = 0; k < r.n; k++)
			bad |= ws_voxel(g, u, w, &r, s, y, x0, k);
	}
	return bad;
}

/* Old slice st of every component into slot t of a thread's copies. */
static void ws_keep(const ws_geom *g, const ffdp_vec *u, const ws_slab *sl, float *p, int64_t st, int64_t t)
{
	for (int c = 0; c < g->nc; c++)
		memcpy(p + (c * sl->nslot + t) * sl->sstride, u->c[c] + st * g->slice, (size_t)g->slice * sizeof(float));
}

/* Each thread its slab; halos copied before the one barrier.  buf holds
 * nslot * nc slots per thread. */
static int ws_compose(const ws_geom *g, ffdp_vec u, const mom_in *mo, const ws_slab *sl,
		      float *buf)
{
	const int simd = ffdp_cpu_use_avx2();
	int bad = 0;
#pragma omp parallel reduction(| : bad)
	{
		const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
		const int64_t a = g->ns * tid / nt, b = g->ns * (tid + 1) / nt;
		float *p = buf + (int64_t)tid * sl->nslot * g->nc * sl->sstride;
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
			bad |= ws_slice(g, &u, mo, &w, s, simd);
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
	const float step = g->stepf;
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
	sl->sstride = g->slice + WS_SLOT_PAD;
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
	float *buf = malloc((size_t)(nt * sl.nslot * sl.sstride * g.nc) * sizeof(float));
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

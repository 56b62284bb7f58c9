/* In-place separable Gaussian (ops.h, "smoothing").
 *
 * Each axis is a stream of units (rows along y, planes along z): unit i is
 * first filtered along the faster axes ("pre": x for a row, x then y for a
 * plane) into a ring of 2r + 1 units, and output unit i - r is combined from
 * the ring as soon as units i - 2r .. i are there, so a pass reads and
 * writes each voxel once (8 B/voxel, the floor) and the ring of planes is
 * the only working set beyond a few rows.  Output unit o is written after
 * input unit o + r was read, so the volume is smoothed in place.
 *
 * Threads take slabs of units (planes in 3-D, rows when there are fewer
 * planes than threads); a slab's neighbours overwrite the units it needs
 * beyond its ends, so each thread pre-filters those (r each side) before a
 * barrier, then streams its slab alone.
 *
 * Every output is (w0 c + sum_k wk (c[-k] + c[+k])) * face scale, k
 * ascending, outside the box reading +0 (from a zero buffer): the same
 * float operations whatever the slab, thread count or ISA (the combine is
 * written for 8 lanes, a second copy compiled for AVX2), and those of the
 * distributed z pass (src/dist/dist_smooth.c).
 *
 * An axis of size 1 is skipped (a 2-D image has no z neighbours; zero
 * padding along it would only scale the image by the centre tap).
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "ffdp/volume.h"

enum { SM_CHUNK = 1024, /* floats combined at a time; the zero buffer's size */
       SM_KMAX = 4 };    /* largest radius of the register kernels */

/* Radii beyond this are a caller error (sigma in voxels, not mm?). */
#define SM_MAX_RADIUS ((int64_t)1 << 20)

static const float sm_zeros[SM_CHUNK]; /* what a unit outside the box reads */

typedef struct sm_axis {
	int on;
	int64_t r;    /* taps used: min(radius, n - 1); farther ones never touch the box */
	float *w;     /* w[k] for k = 0..r (symmetric) */
	float *scale; /* n entries: 1 / kernel mass inside the box, or 1 */
	int scaled;   /* some scale differs from 1 */
} sm_axis;

static void sm_axis_free(sm_axis *ax)
{
	free(ax->w);
	free(ax->scale);
	memset(ax, 0, sizeof(*ax));
}

/* Sampled Gaussian on [-radius, radius] normalised to sum 1 (in double),
 * and the per-position face correction. */
static ffdp_status sm_axis_init(sm_axis *ax, double sigma, double truncate, int renorm, int64_t n,
				ffdp_error *err)
{
	memset(ax, 0, sizeof(*ax));
	if (sigma == 0.0 || n == 1)
		return FFDP_OK;
	double rr = ceil(truncate * sigma);
	if (!(rr <= (double)SM_MAX_RADIUS))
		return ffdp_fail(err, FFDP_ERR_ARG, "smooth: kernel radius %.3g voxels is too large (sigma %g)",
				 rr, sigma);
	int64_t radius = (int64_t)rr;
	ax->on = 1;
	ax->r = radius < n - 1 ? radius : n - 1;
	ax->w = malloc((size_t)(ax->r + 1) * sizeof(float));
	ax->scale = malloc((size_t)n * sizeof(float));
	double *wd = malloc((size_t)(ax->r + 1) * sizeof(double));
	if (!ax->w || !ax->scale || !wd) {
		free(wd);
		sm_axis_free(ax);
		return ffdp_fail(err, FFDP_ERR_NOMEM, "smooth: cannot allocate the kernel");
	}
	double sum = 0.0, s2 = 2.0 * sigma * sigma;
	for (int64_t k = 0; k <= radius; k++) {
		double e = exp(-(double)k * (double)k / s2);
		if (k <= ax->r)
			wd[k] = e;
		sum += k ? 2.0 * e : e;
	}
	for (int64_t k = 0; k <= ax->r; k++)
		ax->w[k] = (float)(wd[k] / sum), wd[k] /= sum;
	/* mass inside the box at position i: taps k with 0 <= i + k < n */
	for (int64_t i = 0; i < n; i++) {
		double mass = 0.0;
		if (renorm && (i < ax->r || i >= n - ax->r)) {
			for (int64_t k = -ax->r; k <= ax->r; k++)
				if (i + k >= 0 && i + k < n)
					mass += wd[k < 0 ? -k : k];
		}
		ax->scale[i] = mass > 0.0 ? (float)(1.0 / mass) : 1.0f;
		ax->scaled |= ax->scale[i] != 1.0f;
	}
	free(wd);
	return FFDP_OK;
}

/* ---- the two kernels: 8 lanes at a time, the same operations per lane ---------- */

typedef float sm_v8 __attribute__((vector_size(32), aligned(4))); /* unaligned access */

#define SM_LD(p) (*(const sm_v8 *)(p))
#define SM_ST(p, v) (*(sm_v8 *)(p) = (v))

/* out[i] = (w0 c[i] + sum_k wk (c[i - k] + c[i + k])) * sc[i], i < n, from
 * c = buf + r (the row with r zeros each side); sc NULL: no scale. */
static inline __attribute__((always_inline)) void sm_xrow_k(float *restrict out, const float *restrict c,
							     int64_t n, const float *restrict w, int64_t r,
							     const float *restrict sc)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		sm_v8 acc = w[0] * SM_LD(c + i);
		for (int64_t k = 1; k <= r; k++)
			acc = acc + w[k] * (SM_LD(c + i - k) + SM_LD(c + i + k));
		if (sc)
			acc = acc * SM_LD(sc + i);
		SM_ST(out + i, acc);
	}
	for (; i < n; i++) {
		float acc = w[0] * c[i];
		for (int64_t k = 1; k <= r; k++)
			acc = acc + w[k] * (c[i - k] + c[i + k]);
		out[i] = sc ? acc * sc[i] : acc;
	}
}

/* out[j] = (w0 u0[j] + sum_k wk (u-k[j] + u+k[j])) * sc for j < n, where
 * src[r + k] is unit k relative to the output (NULL: outside, reads 0). */
static inline __attribute__((always_inline)) void sm_comb_k(float *restrict out, const float *const *src,
							     int64_t n, const float *restrict w, int64_t r,
							     float sc, int scaled)
{
	const float *lo[SM_KMAX + 1], *hi[SM_KMAX + 1];
	for (int64_t j0 = 0; j0 < n; j0 += SM_CHUNK) {
		const int64_t m = n - j0 < SM_CHUNK ? n - j0 : SM_CHUNK;
		float *restrict o = out + j0;
		const float *restrict c = src[r] + j0;
		for (int64_t k = 1; k <= r; k++) {
			lo[k] = src[r - k] ? src[r - k] + j0 : sm_zeros;
			hi[k] = src[r + k] ? src[r + k] + j0 : sm_zeros;
		}
		int64_t i = 0;
		for (; i + 8 <= m; i += 8) {
			sm_v8 acc = w[0] * SM_LD(c + i);
			for (int64_t k = 1; k <= r; k++)
				acc = acc + w[k] * (SM_LD(lo[k] + i) + SM_LD(hi[k] + i));
			if (scaled)
				acc = acc * sc;
			SM_ST(o + i, acc);
		}
		for (; i < m; i++) {
			float acc = w[0] * c[i];
			for (int64_t k = 1; k <= r; k++)
				acc = acc + w[k] * (lo[k][i] + hi[k][i]);
			o[i] = scaled ? acc * sc : acc;
		}
	}
}

/* Wider kernels: the same operations, a tap at a time over a chunk, with
 * the sum kept in out (in place of a register). */
static inline __attribute__((always_inline)) void sm_comb_wide(float *restrict out, const float *const *src,
								int64_t n, const float *restrict w, int64_t r,
								float sc, int scaled)
{
	for (int64_t i = 0; i < n; i++)
		out[i] = w[0] * src[r][i];
	for (int64_t k = 1; k <= r; k++) {
		const float *restrict lo = src[r - k], *restrict hi = src[r + k];
		const float wk = w[k];
		if (lo && hi)
			for (int64_t i = 0; i < n; i++)
				out[i] = out[i] + wk * (lo[i] + hi[i]);
		else
			for (int64_t i = 0; i < n; i++)
				out[i] = out[i] + wk * ((lo ? lo[i] : 0.0f) + (hi ? hi[i] : 0.0f));
	}
	if (scaled)
		for (int64_t i = 0; i < n; i++)
			out[i] = out[i] * sc;
}

/* Radii 1..4 (sigma up to 2 at truncate 2) get their own unrolled code. */
#define SM_COMB_SWITCH(out, src, n, w, r, sc, scaled)                                                       \
	switch (r) {                                                                                        \
	case 1: sm_comb_k(out, src, n, w, 1, sc, scaled); break;                                            \
	case 2: sm_comb_k(out, src, n, w, 2, sc, scaled); break;                                            \
	case 3: sm_comb_k(out, src, n, w, 3, sc, scaled); break;                                            \
	case 4: sm_comb_k(out, src, n, w, 4, sc, scaled); break;                                            \
	default: sm_comb_wide(out, src, n, w, r, sc, scaled);                                               \
	}

#define SM_XROW_SWITCH(out, c, n, w, r, sc)                                                                 \
	switch (r) {                                                                                        \
	case 1: sm_xrow_k(out, c, n, w, 1, sc); break;                                                      \
	case 2: sm_xrow_k(out, c, n, w, 2, sc); break;                                                      \
	case 3: sm_xrow_k(out, c, n, w, 3, sc); break;                                                      \
	case 4: sm_xrow_k(out, c, n, w, 4, sc); break;                                                      \
	default: sm_xrow_k(out, c, n, w, r, sc);                                                            \
	}

static void sm_xrow_base(float *out, const float *c, int64_t n, const float *w, int64_t r, const float *sc)
{
	SM_XROW_SWITCH(out, c, n, w, r, sc)
}

static void sm_comb_base(float *out, const float *const *src, int64_t n, const float *w, int64_t r, float sc,
			 int scaled)
{
	SM_COMB_SWITCH(out, src, n, w, r, sc, scaled)
}

#if defined(__GNUC__) && defined(__x86_64__)
#define SM_AVX2 1
__attribute__((target("avx2"))) static void sm_xrow_avx2(float *out, const float *c, int64_t n, const float *w,
							  int64_t r, const float *sc)
{
	SM_XROW_SWITCH(out, c, n, w, r, sc)
}

__attribute__((target("avx2"))) static void sm_comb_avx2(float *out, const float *const *src, int64_t n,
							  const float *w, int64_t r, float sc, int scaled)
{
	SM_COMB_SWITCH(out, src, n, w, r, sc, scaled)
}
#endif

/* ---- streams ------------------------------------------------------------------- */

typedef struct sm_job {
	float *p;
	int64_t n[3];
	sm_axis ax[3];
	int avx2;
} sm_job;

/* Per-thread buffers: a zero-padded row, rings and halos of rows (y) and of
 * planes (z), and the window of 2r + 1 unit pointers per axis. */
typedef struct sm_bufs {
	float *xrow, *rows, *row_halo, *planes, *plane_halo;
	const float **win[3];
} sm_bufs;

static void sm_comb(const sm_job *j, float *out, const float *const *src, int64_t n, const sm_axis *ax, int64_t o)
{
#ifdef SM_AVX2
	if (j->avx2) {
		sm_comb_avx2(out, src, n, ax->w, ax->r, ax->scale[o], ax->scaled);
		return;
	}
#endif
	sm_comb_base(out, src, n, ax->w, ax->r, ax->scale[o], ax->scaled);
}

/* out[i], i < n, from c = a row with r readable floats each side. */
static void sm_xrun(const sm_job *j, float *out, const float *c, int64_t n, const float *sc)
{
	const sm_axis *ax = &j->ax[0];
#ifdef SM_AVX2
	if (j->avx2) {
		sm_xrow_avx2(out, c, n, ax->w, ax->r, sc);
		return;
	}
#endif
	sm_xrow_base(out, c, n, ax->w, ax->r, sc);
}

/* Row in -> out along x (out may be in).  Outputs whose taps all fall in
 * the row read it in place; only the r outputs at each end read a zero-
 * padded copy of the 2r floats there (the whole row's copy had been a
 * third of the 3-D smoothing's time).  Every output's operations are the
 * same either way. */
static void sm_xrow(const sm_job *j, const float *in, float *out, const sm_bufs *b)
{
	const sm_axis *ax = &j->ax[0];
	const int64_t n = j->n[0], r = ax->r;
	const float *sc = ax->scaled ? ax->scale : NULL;
	float *x = b->xrow;
	if (!ax->on) {
		if (out != in)
			memcpy(out, in, (size_t)n * sizeof(float));
		return;
	}
	if (out == in || n <= 4 * r) { /* in place, or a short row: all of it padded */
		memset(x, 0, (size_t)r * sizeof(float));
		memcpy(x + r, in, (size_t)n * sizeof(float));
		memset(x + r + n, 0, (size_t)r * sizeof(float));
		sm_xrun(j, out, x + r, n, sc);
		return;
	}
	sm_xrun(j, out + r, in + r, n - 2 * r, sc ? sc + r : NULL);
	memset(x, 0, (size_t)r * sizeof(float)); /* x = 0^r, in[0, 2r) */
	memcpy(x + r, in, (size_t)(2 * r) * sizeof(float));
	sm_xrun(j, out, x + r, r, sc);
	memcpy(x, in + n - 2 * r, (size_t)(2 * r) * sizeof(float)); /* x = in[n - 2r, n), 0^r */
	memset(x + 2 * r, 0, (size_t)r * sizeof(float));
	sm_xrun(j, out + n - r, x + r, r, sc ? sc + n - r : NULL);
}

/* Units of len floats along axis a (1: rows of a plane, 2: planes), unit i
 * of the input at in + i * len, of the output at out + i * len. */
typedef struct sm_stream {
	int a;
	int64_t n, len;
	const float *in;
	float *out;
} sm_stream;

static void sm_plane(const sm_job *j, const float *in, float *out, const sm_bufs *b);

/* Unit i filtered along the axes faster than the stream's into out. */
static void sm_pre(const sm_job *j, const sm_stream *st, int64_t i, float *out, const sm_bufs *b)
{
	if (st->a == 2)
		sm_plane(j, st->in + i * st->len, out, b);
	else
		sm_xrow(j, st->in + i * st->len, out, b);
}

/* Units [b0, b1) smoothed along the stream's axis.  ring holds 2r + 1
 * units; halo the pre-filtered units b0 - r .. b0 - 1 then b1 .. b1 + r - 1
 * (those inside the box; unused when [b0, b1) is the whole axis). */
static void sm_stream_run(const sm_job *j, const sm_stream *st, int64_t b0, int64_t b1, float *ring,
			  const float *halo, const sm_bufs *b)
{
	const sm_axis *ax = &j->ax[st->a];
	const int64_t r = ax->r, cap = 2 * r + 1, len = st->len;
	const float **win = b->win[st->a];
	for (int64_t i = b0; i < b1 + r; i++) {
		if (i < b1)
			sm_pre(j, st, i, ring + (i % cap) * len, b);
		const int64_t o = i - r;
		if (o < b0)
			continue;
		for (int64_t k = -r; k <= r; k++) {
			const int64_t u = o + k;
			const float *p = NULL; /* outside the box */
			if (u >= 0 && u < b0)
				p = halo + (u - (b0 - r)) * len;
			else if (u >= b1 && u < st->n)
				p = halo + (r + u - b1) * len;
			else if (u >= b0 && u < b1)
				p = ring + (u % cap) * len;
			win[r + k] = p;
		}
		sm_comb(j, st->out + o * len, win, len, ax, o);
	}
}

/* Plane in -> out along x and y, one thread (out may be in). */
static void sm_plane(const sm_job *j, const float *in, float *out, const sm_bufs *b)
{
	const int64_t nx = j->n[0], ny = j->n[1];
	if (!j->ax[1].on) {
		for (int64_t y = 0; y < ny; y++)
			sm_xrow(j, in + y * nx, out + y * nx, b);
		return;
	}
	sm_stream rows = {1, ny, nx, in, out};
	sm_stream_run(j, &rows, 0, ny, b->rows, NULL, b);
}

/* This thread's slab of the stream, in place: the units its neighbours
 * will overwrite are pre-filtered into halo before the barrier.  Called by
 * every thread of the team. */
static void sm_slab(const sm_job *j, const sm_stream *st, float *ring, float *halo, const sm_bufs *b)
{
	const int64_t r = j->ax[st->a].r, n = st->n, len = st->len;
	const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
	const int64_t b0 = n * tid / nt, b1 = n * (tid + 1) / nt;
	if (nt > 1 && b0 < b1) {
		for (int64_t u = b0 - r > 0 ? b0 - r : 0; u < b0; u++)
			sm_pre(j, st, u, halo + (u - (b0 - r)) * len, b);
		for (int64_t u = b1; u < b1 + r && u < n; u++)
			sm_pre(j, st, u, halo + (r + u - b1) * len, b);
	}
#pragma omp barrier
	if (b0 < b1)
		sm_stream_run(j, st, b0, b1, ring, halo, b);
}

/* Floats and pointers of one thread's buffers. */
static void sm_bufs_size(const sm_job *j, int nt, int64_t *nf, int64_t *np)
{
	const int64_t nx = j->n[0], plane = nx * j->n[1];
	const int64_t rx = j->ax[0].r, ry = j->ax[1].r, rz = j->ax[2].r;
	*nf = nx + 2 * rx;
	if (j->ax[1].on)
		*nf += (2 * ry + 1 + (nt > 1 ? 2 * ry : 0)) * nx;
	if (j->ax[2].on)
		*nf += (2 * rz + 1 + (nt > 1 ? 2 * rz : 0)) * plane;
	*nf = (*nf + 15) & ~(int64_t)15; /* keep each thread's block 64-byte aligned */
	*np = 2 * ry + 1 + 2 * rz + 1;
}

static void sm_bufs_carve(const sm_job *j, int nt, float *f, const float **p, sm_bufs *b)
{
	const int64_t nx = j->n[0], plane = nx * j->n[1];
	const int64_t rx = j->ax[0].r, ry = j->ax[1].r, rz = j->ax[2].r;
	memset(b, 0, sizeof(*b));
	b->xrow = f, f += nx + 2 * rx;
	if (j->ax[1].on) {
		b->rows = f, f += (2 * ry + 1) * nx;
		b->row_halo = f, f += (nt > 1 ? 2 * ry : 0) * nx;
	}
	if (j->ax[2].on) {
		b->planes = f, f += (2 * rz + 1) * plane;
		b->plane_halo = f;
	}
	b->win[1] = p, b->win[2] = p + 2 * ry + 1;
}

static void sm_run(const sm_job *j, float *fbuf, const float **pbuf, int64_t nf, int64_t np)
{
	const int64_t nx = j->n[0], ny = j->n[1], nz = j->n[2], plane = nx * ny;
	const int nt = omp_get_max_threads();
#pragma omp parallel
	{
		const int tid = omp_get_thread_num();
		sm_bufs b;
		sm_bufs_carve(j, nt, fbuf + tid * nf, pbuf + tid * np, &b);
		if (j->ax[2].on) {
			sm_stream planes = {2, nz, plane, j->p, j->p};
			sm_slab(j, &planes, b.planes, b.plane_halo, &b);
		} else if (!j->ax[1].on) {
#pragma omp for schedule(static)
			for (int64_t row = 0; row < ny * nz; row++)
				sm_xrow(j, j->p + row * nx, j->p + row * nx, &b);
		} else if (nz >= nt) {
#pragma omp for schedule(dynamic, 1)
			for (int64_t z = 0; z < nz; z++)
				sm_plane(j, j->p + z * plane, j->p + z * plane, &b);
		} else {
			for (int64_t z = 0; z < nz; z++) { /* fewer planes than threads (2-D): slabs of rows */
				sm_stream rows = {1, ny, nx, j->p + z * plane, j->p + z * plane};
				sm_slab(j, &rows, b.rows, b.row_halo, &b);
			}
		}
	}
}

ffdp_status ffdp_cpu_smooth(ffdp_backend *be, ffdp_img x, const ffdp_smooth_opts *o, ffdp_error *err)
{
	(void)be;
	sm_job j = {.p = x.p, .n = {x.n[0], x.n[1], x.n[2]}};
	double trunc = o->truncate > 0.0 ? o->truncate : 2.0;
	ffdp_status s = FFDP_OK;
	for (int a = 0; a < 3 && !s; a++)
		s = sm_axis_init(&j.ax[a], o->sigma[a], trunc, o->renormalize, x.n[a], err);
	if (s || !(j.ax[0].on || j.ax[1].on || j.ax[2].on))
		goto out;
	j.avx2 = ffdp_cpu_use_avx2();
	const int nt = omp_get_max_threads();
	int64_t nf, np;
	sm_bufs_size(&j, nt, &nf, &np);
	float *fbuf = ffdp_alloc((size_t)(nf * nt) * sizeof(float), err);
	const float **pbuf = malloc((size_t)(np * nt) * sizeof(*pbuf));
	if (!fbuf || !pbuf) {
		s = fbuf ? ffdp_fail(err, FFDP_ERR_NOMEM, "smooth: cannot allocate the window") : FFDP_ERR_NOMEM;
	} else {
		sm_run(&j, fbuf, pbuf, nf, np);
	}
	ffdp_free(fbuf);
	free(pbuf);
out:
	for (int a = 0; a < 3; a++)
		sm_axis_free(&j.ax[a]);
	return s;
}

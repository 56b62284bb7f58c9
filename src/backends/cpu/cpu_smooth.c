/* In-place separable Gaussian (ops.h, "smoothing").
 *
 * A line (x) or a block of SM_BLOCK columns (y, z) is
 * gathered into a zero-padded per-thread buffer, convolved from there and
 * written back, so a pass reads and writes each voxel once and strided
 * axes are read SM_BLOCK floats (two cache lines) at a time.
 *
 * IO floor: one read and one write of the volume, 8 B/voxel.  With a z pass
 * on planes of >= SM_STREAM_MIN_SHARE voxels per thread, all three axes run
 * in one sweep through a ring of 2 rz + 2 x/y-smoothed planes
 * (sm_run_stream), at the floor, with two barriers per plane.  Otherwise
 * each axis is a pass (8 B/voxel each), except that with enough z planes
 * for all threads the x and y passes run plane by plane on one thread, so a
 * plane in cache is fetched once for both (16 B/voxel in 3-D).
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

enum { SM_BLOCK = 32, SM_ZCHUNK = 1024, SM_STREAM_MIN_SHARE = 65536 };

/* Radii beyond this are a caller error (sigma in voxels, not mm?). */
#define SM_MAX_RADIUS ((int64_t)1 << 20)

typedef struct sm_axis {
	int on;
	int64_t r;    /* taps used: min(radius, n - 1); farther ones never touch the box */
	float *w;     /* w[k] for k = 0..r (symmetric) */
	float *scale; /* n entries: 1 / kernel mass inside the box, or 1 */
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
	}
	free(wd);
	return FFDP_OK;
}

/* Smooth one contiguous row of n floats; buf holds n + 2r floats. */
static void sm_row(float *restrict row, int64_t n, const sm_axis *ax, float *restrict buf)
{
	const int64_t r = ax->r;
	const float *w = ax->w, *sc = ax->scale;
	memset(buf, 0, (size_t)r * sizeof(float));
	memcpy(buf + r, row, (size_t)n * sizeof(float));
	memset(buf + r + n, 0, (size_t)r * sizeof(float));
	const float *c = buf + r;
	for (int64_t i = 0; i < n; i++)
		row[i] = w[0] * c[i];
	for (int64_t k = 1; k <= r; k++) {
		const float wk = w[k];
		for (int64_t i = 0; i < n; i++)
			row[i] += wk * (c[i - k] + c[i + k]);
	}
	for (int64_t i = 0; i < n; i++)
		row[i] *= sc[i];
}

/* Smooth nb <= SM_BLOCK adjacent columns along a strided axis: element l of
 * column j is base[l * stride + j], l < n.  buf holds (n + 2r) * SM_BLOCK. */
static void sm_cols(float *restrict base, int64_t stride, int64_t n, int nb, const sm_axis *ax,
		    float *restrict buf)
{
	const int64_t r = ax->r;
	const float *w = ax->w, *sc = ax->scale;
	memset(buf, 0, (size_t)(r * SM_BLOCK) * sizeof(float));
	memset(buf + (r + n) * SM_BLOCK, 0, (size_t)(r * SM_BLOCK) * sizeof(float));
	for (int64_t l = 0; l < n; l++) {
		float *d = buf + (l + r) * SM_BLOCK;
		const float *s = base + l * stride;
		for (int j = 0; j < nb; j++)
			d[j] = s[j];
		for (int j = nb; j < SM_BLOCK; j++)
			d[j] = 0.0f;
	}
	for (int64_t l = 0; l < n; l++) {
		const float *c = buf + (l + r) * SM_BLOCK;
		float acc[SM_BLOCK];
		for (int j = 0; j < SM_BLOCK; j++)
			acc[j] = w[0] * c[j];
		for (int64_t k = 1; k <= r; k++) {
			const float wk = w[k];
			const float *lo = c - k * SM_BLOCK, *hi = c + k * SM_BLOCK;
			for (int j = 0; j < SM_BLOCK; j++)
				acc[j] += wk * (lo[j] + hi[j]);
		}
		float *d = base + l * stride;
		const float s = sc[l];
		for (int j = 0; j < nb; j++)
			d[j] = acc[j] * s;
	}
}

typedef struct sm_job {
	float *p;
	int64_t n[3];
	sm_axis ax[3];
	float *scratch; /* per thread: per_thread floats */
	int64_t per_thread;
} sm_job;

static int sm_bw(int64_t nx, int64_t b)
{
	int64_t left = nx - b * SM_BLOCK;
	return (int)(left < SM_BLOCK ? left : SM_BLOCK);
}

/* x then y on plane z by one thread, so the plane stays in its cache. */
static void sm_plane_xy(const sm_job *j, int64_t z, float *buf)
{
	const int64_t nx = j->n[0], ny = j->n[1];
	float *plane = j->p + z * nx * ny;
	if (j->ax[0].on)
		for (int64_t y = 0; y < ny; y++)
			sm_row(plane + y * nx, nx, &j->ax[0], buf);
	if (j->ax[1].on)
		for (int64_t b = 0; b * SM_BLOCK < nx; b++)
			sm_cols(plane + b * SM_BLOCK, nx, ny, sm_bw(nx, b), &j->ax[1], buf);
}

static void sm_run(const sm_job *j)
{
	const int64_t nx = j->n[0], ny = j->n[1], nz = j->n[2];
	const int64_t nbx = (nx + SM_BLOCK - 1) / SM_BLOCK;
	const int fuse_xy = nz >= 2 * (int64_t)omp_get_max_threads();
#pragma omp parallel
	{
		float *buf = j->scratch + (int64_t)omp_get_thread_num() * j->per_thread;
		if (fuse_xy) {
#pragma omp for schedule(dynamic, 1)
			for (int64_t z = 0; z < nz; z++)
				sm_plane_xy(j, z, buf);
		} else {
			if (j->ax[0].on) {
#pragma omp for schedule(static)
				for (int64_t row = 0; row < ny * nz; row++)
					sm_row(j->p + row * nx, nx, &j->ax[0], buf);
			}
			if (j->ax[1].on) {
#pragma omp for schedule(static)
				for (int64_t t = 0; t < nz * nbx; t++) {
					int64_t z = t / nbx, b = t % nbx;
					float *base = j->p + z * nx * ny + b * SM_BLOCK;
					sm_cols(base, nx, ny, sm_bw(nx, b), &j->ax[1], buf);
				}
			}
		}
		if (j->ax[2].on) {
#pragma omp for schedule(static)
			for (int64_t t = 0; t < ny * nbx; t++) {
				int64_t y = t / nbx, b = t % nbx;
				float *base = j->p + y * nx + b * SM_BLOCK;
				sm_cols(base, nx * ny, nz, sm_bw(nx, b), &j->ax[2], buf);
			}
		}
	}
}

/* Output plane zo along z from the ring: voxels [j0, j0 + n) of the plane. */
static void sm_zcomb(const sm_job *j, const float *ring, int64_t cap, int64_t zo, int64_t j0, int64_t n)
{
	const int64_t plane = j->n[0] * j->n[1], nz = j->n[2], r = j->ax[2].r;
	const float *w = j->ax[2].w;
	float *restrict out = j->p + zo * plane + j0;
	const float *restrict c = ring + (zo % cap) * plane + j0;
	for (int64_t i = 0; i < n; i++)
		out[i] = w[0] * c[i];
	for (int64_t k = 1; k <= r; k++) {
		const float wk = w[k];
		if (zo - k >= 0) {
			const float *restrict lo = ring + ((zo - k) % cap) * plane + j0;
			for (int64_t i = 0; i < n; i++)
				out[i] += wk * lo[i];
		}
		if (zo + k < nz) {
			const float *restrict hi = ring + ((zo + k) % cap) * plane + j0;
			for (int64_t i = 0; i < n; i++)
				out[i] += wk * hi[i];
		}
	}
	const float sc = j->ax[2].scale[zo];
	if (sc != 1.0f)
		for (int64_t i = 0; i < n; i++)
			out[i] *= sc;
}

/* All three axes in one sweep over memory (8 B/voxel): step zi smooths
 * plane zi along x and y into ring slot zi % cap, and writes output plane
 * zo = zi - rz - 1 from slots zo - rz .. zo + rz, finished in earlier
 * steps.  cap = 2 rz + 2, so slot zi last held zi - 2 rz - 2, which zo no
 * longer reads; u plane zo was read (copied) at step zo, so it may be
 * overwritten.  Two barriers per plane. */
static void sm_run_stream(const sm_job *j, float *ring, int64_t cap)
{
	const int64_t nx = j->n[0], ny = j->n[1], nz = j->n[2], plane = nx * ny, rz = j->ax[2].r;
	const int64_t nbx = (nx + SM_BLOCK - 1) / SM_BLOCK, nzb = (plane + SM_ZCHUNK - 1) / SM_ZCHUNK;
#pragma omp parallel
	{
		float *buf = j->scratch + (int64_t)omp_get_thread_num() * j->per_thread;
		for (int64_t zi = 0; zi < nz + rz + 1; zi++) {
			const int64_t zo = zi - rz - 1, nrow = zi < nz ? ny : 0, nout = zo >= 0 ? nzb : 0;
			float *slot = ring + (zi % cap) * plane;
#pragma omp for schedule(static)
			for (int64_t t = 0; t < nrow + nout; t++) {
				if (t < nrow) {
					memcpy(slot + t * nx, j->p + zi * plane + t * nx, (size_t)nx * sizeof(float));
					if (j->ax[0].on)
						sm_row(slot + t * nx, nx, &j->ax[0], buf);
				} else {
					int64_t j0 = (t - nrow) * SM_ZCHUNK;
					sm_zcomb(j, ring, cap, zo, j0, plane - j0 < SM_ZCHUNK ? plane - j0 : SM_ZCHUNK);
				}
			}
			if (zi < nz && j->ax[1].on) {
#pragma omp for schedule(static)
				for (int64_t b = 0; b < nbx; b++)
					sm_cols(slot + b * SM_BLOCK, nx, ny, sm_bw(nx, b), &j->ax[1], buf);
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
	if (s)
		goto out;
	int64_t need = 0;
	if (j.ax[0].on)
		need = x.n[0] + 2 * j.ax[0].r;
	for (int a = 1; a < 3; a++)
		if (j.ax[a].on && (x.n[a] + 2 * j.ax[a].r) * SM_BLOCK > need)
			need = (x.n[a] + 2 * j.ax[a].r) * SM_BLOCK;
	if (need == 0)
		goto out;
	j.per_thread = (need + 15) & ~(int64_t)15; /* keep each thread's buffer 64-byte aligned */
	j.scratch = ffdp_alloc((size_t)(j.per_thread * omp_get_max_threads()) * sizeof(float), err);
	if (!j.scratch) {
		s = FFDP_ERR_NOMEM;
		goto out;
	}
	/* one sweep when each thread's share of a plane amortises two barriers */
	if (j.ax[2].on && x.n[0] * x.n[1] >= SM_STREAM_MIN_SHARE * (int64_t)omp_get_max_threads()) {
		int64_t cap = 2 * j.ax[2].r + 2;
		float *ring = ffdp_alloc((size_t)(cap * x.n[0] * x.n[1]) * sizeof(float), err);
		if (!ring) {
			s = FFDP_ERR_NOMEM;
		} else {
			sm_run_stream(&j, ring, cap);
			ffdp_free(ring);
		}
	} else {
		sm_run(&j);
	}
	ffdp_free(j.scratch);
out:
	for (int a = 0; a < 3; a++)
		sm_axis_free(&j.ax[a]);
	return s;
}

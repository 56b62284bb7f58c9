/* Distributed Gaussian smoothing over z-slabs (dist.h).
 *
 * x and y are smoothed per plane, so each rank smooths its own planes with
 * ffdp_op_smooth (sigma_z = 0) before the exchange; the halo then carries
 * x/y-smoothed planes and only z needs neighbours.  The z pass is written
 * here, not delegated to the op on the haloed slab: the op would take the
 * slab's ends for the volume's faces, while renormalize must use the true
 * faces and zero padding must come from outside the volume only.  Taps,
 * face scales and the order of float operations are the CPU op's, so the
 * result matches ffdp_op_smooth on the whole volume (bit for bit on the
 * column path).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"

/* The op's limit (cpu_smooth.c): larger radii mean sigma in mm, not voxels. */
#define DS_MAX_RADIUS ((int64_t)1 << 20)

typedef struct ds_kernel {
	int64_t r;   /* taps used: min(radius, nz - 1) */
	float *w;    /* w[k], k = 0..r */
	double *wd;  /* the same in double, for the face masses */
} ds_kernel;

/* Sampled Gaussian normalised over the full radius, in double, then
 * rounded per tap: the op's kernel. */
static ffdp_status ds_kernel_init(ds_kernel *k, double sigma, double truncate, int64_t nz,
				  ffdp_error *err)
{
	double rr = ceil(truncate * sigma);

	memset(k, 0, sizeof(*k));
	if (!(rr <= (double)DS_MAX_RADIUS))
		return ffdp_fail(err, FFDP_ERR_ARG, "dist smooth: kernel radius %.3g voxels is too large (sigma %g)",
				 rr, sigma);
	int64_t radius = (int64_t)rr;
	k->r = radius < nz - 1 ? radius : nz - 1;
	k->w = malloc((size_t)(k->r + 1) * sizeof(float));
	k->wd = malloc((size_t)(k->r + 1) * sizeof(double));
	if (!k->w || !k->wd) {
		free(k->w);
		free(k->wd);
		return ffdp_fail(err, FFDP_ERR_NOMEM, "dist smooth: cannot allocate the kernel");
	}
	double sum = 0.0, s2 = 2.0 * sigma * sigma;
	for (int64_t i = 0; i <= radius; i++) {
		double e = exp(-(double)i * (double)i / s2);
		if (i <= k->r)
			k->wd[i] = e;
		sum += i ? 2.0 * e : e;
	}
	for (int64_t i = 0; i <= k->r; i++)
		k->w[i] = (float)(k->wd[i] / sum), k->wd[i] /= sum;
	return FFDP_OK;
}

/* 1 / kernel mass inside [0, nz) at global plane z, or 1. */
static float ds_face_scale(const ds_kernel *k, int64_t z, int64_t nz, int renorm)
{
	double mass = 0.0;

	if (!renorm || (z >= k->r && z < nz - k->r))
		return 1.0f;
	for (int64_t i = -k->r; i <= k->r; i++)
		if (z + i >= 0 && z + i < nz)
			mass += k->wd[i < 0 ? -i : i];
	return mass > 0.0 ? (float)(1.0 / mass) : 1.0f;
}

/* out plane l from haloed buffer planes l .. l + 2r (halo outside the
 * volume is zero, as the op's padding). */
static void ds_zpass(float *out, const float *buf, int64_t own, int64_t plane, const ds_kernel *k,
		     const ffdp_slab *s, int renorm)
{
	const int64_t r = k->r;
	const float *w = k->w;

#pragma omp parallel for schedule(static)
	for (int64_t l = 0; l < own; l++) {
		const float *c = buf + (l + r) * plane;
		float *d = out + l * plane;
		const float sc = ds_face_scale(k, s->z0 + l, s->nz, renorm);
		for (int64_t i = 0; i < plane; i++)
			d[i] = w[0] * c[i];
		for (int64_t j = 1; j <= r; j++) {
			const float wj = w[j];
			const float *lo = c - j * plane, *hi = c + j * plane;
			for (int64_t i = 0; i < plane; i++)
				d[i] += wj * (lo[i] + hi[i]);
		}
		for (int64_t i = 0; i < plane; i++)
			d[i] *= sc;
	}
}

/* Any backend: the op on the rank's planes with a halo of the kernel's
 * radius, clipped to the volume.  The box's faces are the volume's where it
 * reaches them and at least a radius from every own plane elsewhere, so
 * the op's face rules (renormalisation, zero padding) apply only at true
 * faces: own planes equal the whole volume's to the backend's rounding. */
static ffdp_status smooth_box(ffdp_dist *d, ffdp_backend *be, ffdp_img slab, const ffdp_slab *s,
			      const ffdp_smooth_opts *o, int64_t h, ffdp_error *err)
{
	const int64_t own = s->z1 - s->z0, plane = slab.n[0] * slab.n[1];
	const int64_t lo = s->z0 - h > 0 ? s->z0 - h : 0, hi = s->z1 + h < s->nz ? s->z1 + h : s->nz;
	float *buf = dist_scratch(d, be, (own + 2 * h) * plane, err, "dist smooth");
	ffdp_status st = buf ? FFDP_OK : FFDP_ERR_NOMEM;
	if (!st && own > 0)
		st = dist_copy(be, buf + h * plane, slab.p, own * plane, err);
	st = ffdp_dist_agree(d, st, "dist smooth", err);
	if (!st)
		st = dist_halo_exchange_be(d, be, buf, plane, s, h, 0.0f, err);
	if (!st && own > 0) {
		ffdp_img box = {buf + (lo - (s->z0 - h)) * plane, {slab.n[0], slab.n[1], hi - lo}};
		st = ffdp_op_smooth(be, box, o, err);
		if (!st)
			st = dist_copy(be, slab.p, buf + h * plane, own * plane, err);
	}
	dist_scratch_put(d, be, buf, (own + 2 * h) * plane);
	return ffdp_dist_agree(d, st, "dist smooth", err);
}

ffdp_status ffdp_dist_smooth(ffdp_dist *d, ffdp_backend *be, ffdp_img slab, const ffdp_slab *s,
			     const ffdp_smooth_opts *o, ffdp_error *err)
{
	const int64_t own = s->z1 - s->z0, plane = slab.n[0] * slab.n[1];
	const double trunc = o->truncate > 0.0 ? o->truncate : 2.0;
	ffdp_smooth_opts xy = *o;
	ffdp_status st = FFDP_OK;
	ds_kernel k;
	float *buf = NULL;

	if (slab.n[2] != own || own < 0 || s->z0 < 0 || s->z1 > s->nz)
		return ffdp_fail(err, FFDP_ERR_ARG, "dist smooth: slab has %lld planes, its range [%lld, %lld)",
				 (long long)slab.n[2], (long long)s->z0, (long long)s->z1);
	if (!(o->sigma[2] >= 0.0))
		return ffdp_fail(err, FFDP_ERR_ARG, "dist smooth: negative sigma");
	xy.sigma[2] = 0.0;

	/* No z pass (sigma_z = 0, or a 2-D volume): purely per plane. */
	if (o->sigma[2] == 0.0 || s->nz == 1) {
		if (own > 0)
			st = ffdp_op_smooth(be, slab, &xy, err);
		return st;
	}

	st = ds_kernel_init(&k, o->sigma[2], trunc, s->nz, err);
	if (st)
		return st;
	const int64_t h = k.r;
	if (!dist_exact(d, be)) {
		free(k.w);
		free(k.wd);
		return smooth_box(d, be, slab, s, o, h, err);
	}
	buf = malloc((size_t)((own + 2 * h) * plane) * sizeof(float));
	if (!buf)
		st = ffdp_fail(err, FFDP_ERR_NOMEM, "dist smooth: cannot allocate %lld haloed planes",
			       (long long)(own + 2 * h));
	if (!st && own > 0) {
		ffdp_img mid = {buf + h * plane, {slab.n[0], slab.n[1], own}};
		memcpy(mid.p, slab.p, (size_t)(own * plane) * sizeof(float));
		st = ffdp_op_smooth(be, mid, &xy, err);
	}
	st = ffdp_dist_agree(d, st, "dist smooth", err);
	if (!st)
		st = ffdp_dist_halo_exchange(d, buf, plane, s, h, 0.0f, err);
	if (!st && own > 0)
		ds_zpass(slab.p, buf, own, plane, &k, s, o->renormalize);
	free(buf);
	free(k.w);
	free(k.wd);
	return st;
}

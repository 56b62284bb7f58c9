/* Moving-image access for the sampler over z-slabs (dist.h).
 *
 * Each rank bounds the z of its sample points (computed as the sampler
 * does, in double from the global index), widens the range by one plane
 * each side, and every rank learns every range (allgather of two
 * integers).  Then, as for halos, each side works out on its own which of
 * its planes another rank wants and which it receives, and all transfers
 * are posted non-blocking and waited on together.  Only the z range is cut:
 * planes are contiguous and the slabs are along z.  The sampler then reads
 * a box of the whole image (m_lo, m_full): its bits are the whole image's
 * (ops.h).
 *
 * Cache.  A level's moving image does not change while the stage runs,
 * and the planes a rank needs move only as fast as the transform; with a
 * cache (ffdp_dist_image.cache) a rank keeps its planes until its points
 * leave them and then fetches the range widened by a quarter each side.
 * Every rank learns who refreshes (allgather of three integers) and only
 * those planes move.
 *
 * Ring.  When some rank's range spans more than a fraction of the volume
 * (ffdp_dist_set_ring; every rank sees every range, so all decide alike),
 * the moving slabs travel around the ranks instead: each holds one slab
 * (plus the plane above it) at a time and samples, through the sampler's z
 * gate, the points whose cell starts in that slab.  Each point is sampled
 * once with its whole cell, so the bits are again the whole image's, and no
 * rank holds more than one slab of the moving image.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"

enum { FETCH_TAG = 11 };

/* [*z0, *z1): the planes of m (nz planes) that a's points read, with a
 * plane of margin and m->margin more each side; empty when the box has no
 * voxel.  NaN points read plane 0 (the sampler clamps them to the low end). */
static ffdp_status needed_planes(ffdp_backend *be, const ffdp_sample_args *a, const ffdp_dist_image *m, int64_t *z0,
				 int64_t *z1, ffdp_error *err)
{
	const int64_t nz = m->n[2];
	double lo, hi;
	int nan;
	*z0 = *z1 = 0;
	ffdp_status s = ffdp_op_sample_zrange(be, a, &lo, &hi, &nan, err);
	if (s || a->out.n[0] * a->out.n[1] * a->out.n[2] == 0)
		return s;
	if (lo > hi) /* every point NaN */
		lo = hi = 0.0;
	/* clamp first: floor of a huge double is no integer */
	lo = fmin(fmax(lo - (double)m->margin, -4.0), (double)nz + 4.0);
	hi = fmin(fmax(hi + (double)m->margin, -4.0), (double)nz + 4.0);
	int64_t a0 = (int64_t)floor(lo) - 1, a1 = (int64_t)floor(hi) + 3;
	if (nan || a0 < 0)
		a0 = 0;
	if (a1 > nz)
		a1 = nz;
	if (a1 <= a0) /* every point beyond the last plane: it is read clamped */
		a0 = nz - 1 < a0 ? nz - 1 : a0, a1 = a0 + 1;
	*z0 = a0, *z1 = a1;
	return FFDP_OK;
}

/* What a ring would bring this rank for one call: every plane but its own. */
static void count_ring(const ffdp_dist *d, const ffdp_dist_image *m, ffdp_dist_traffic *t)
{
	ffdp_slab me = ffdp_slab_of(m->n[2], d->rank, d->size);
	if (t)
		t->ring += (uint64_t)((m->n[2] - (me.z1 - me.z0)) * m->n[0] * m->n[1]) * sizeof(float);
}

static int64_t overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1, int64_t *lo, int64_t *hi)
{
	*lo = a0 > b0 ? a0 : b0;
	*hi = a1 < b1 ? a1 : b1;
	return *hi > *lo ? *hi - *lo : 0;
}

/* The transfers of the planes between this rank and every other: my
 * planes in their ranges out, their planes in my range in; my own planes
 * in my range are copied. */
static ffdp_status fetch_exchange(ffdp_dist *d, ffdp_backend *be, const ffdp_dist_image *m, const int64_t *rng,
				  ffdp_dist_mbox *box, ffdp_dist_traffic *t, ffdp_error *err)
{
	const int64_t plane = m->n[0] * m->n[1];
	ffdp_slab me = ffdp_slab_of(m->n[2], d->rank, d->size);
	int64_t lo, hi;
	uint64_t sent = 0, recv = 0;
	ffdp_status s = FFDP_OK;
	dist_xfer x;

	dist_xfer_init(&x, d, be);
	for (int q = 0; q < d->size; q++) {
		ffdp_slab o = ffdp_slab_of(m->n[2], q, d->size);
		if (q == d->rank) {
			if (overlap(me.z0, me.z1, box->z0, box->z1, &lo, &hi))
				s = dist_copy(be, box->p + (lo - box->z0) * plane, m->own + (lo - me.z0) * plane,
					      (hi - lo) * plane, err);
			continue;
		}
		if (overlap(o.z0, o.z1, box->z0, box->z1, &lo, &hi)) {
			dist_xfer_recv(&x, box->p + (lo - box->z0) * plane, (hi - lo) * plane, q, FETCH_TAG);
			recv += (uint64_t)((hi - lo) * plane) * sizeof(float);
		}
		if (overlap(me.z0, me.z1, rng[2 * q], rng[2 * q + 1], &lo, &hi)) {
			dist_xfer_send(&x, m->own + (lo - me.z0) * plane, (hi - lo) * plane, q, FETCH_TAG);
			sent += (uint64_t)((hi - lo) * plane) * sizeof(float);
		}
	}
	ffdp_status sx = dist_xfer_run(&x, err);
	if (s || sx)
		return s ? s : sx;
	if (t)
		t->sent += sent, t->recv += recv, t->fetches++;
	return FFDP_OK;
}

static ffdp_status check_image(const ffdp_dist_image *m, ffdp_error *err)
{
	const int64_t plane = m->n[0] * m->n[1];
	if (plane < 1 || plane > INT32_MAX || m->n[2] < 1)
		return ffdp_fail(err, FFDP_ERR_ARG, "dist fetch: bad image size %lld x %lld x %lld",
				 (long long)m->n[0], (long long)m->n[1], (long long)m->n[2]);
	return FFDP_OK;
}

ffdp_status ffdp_dist_fetch(ffdp_dist *d, ffdp_backend *be, const ffdp_sample_args *a, const ffdp_dist_image *m,
			    ffdp_dist_mbox *box, ffdp_dist_traffic *t, ffdp_error *err)
{
	const int64_t plane = m->n[0] * m->n[1];
	int64_t mine[2] = {0, 0}, *rng = NULL;
	ffdp_status s;

	memset(box, 0, sizeof(*box));
	box->be = be;
	if ((s = check_image(m, err)) || (s = dist_check_backend(d, be, "dist fetch", err)))
		return s;
	s = needed_planes(be, a, m, &mine[0], &mine[1], err);
	box->z0 = mine[0], box->z1 = mine[1];
	rng = malloc((size_t)d->size * 2 * sizeof(int64_t));
	if (!s && !rng)
		s = ffdp_fail(err, FFDP_ERR_NOMEM, "dist fetch: cannot allocate %d ranges", d->size);
	if (!s && box->z1 > box->z0 && !(box->p = dist_alloc(be, (box->z1 - box->z0) * plane, err, "dist fetch")))
		s = FFDP_ERR_NOMEM;
	if ((s = ffdp_dist_agree(d, s, "dist fetch", err)))
		goto out;
	MPI_Allgather(mine, 2, MPI_INT64_T, rng, 2, MPI_INT64_T, d->comm);
	s = fetch_exchange(d, be, m, rng, box, t, err);
	count_ring(d, m, t);
out:
	free(rng);
	if (s)
		ffdp_dist_mbox_free(box);
	return s;
}

ffdp_status ffdp_dist_fetch_cached(ffdp_dist *d, ffdp_backend *be, const ffdp_sample_args *a,
				   const ffdp_dist_image *m, ffdp_dist_traffic *t, ffdp_error *err)
{
	ffdp_dist_mbox *c = m->cache, nb = {NULL, 0, 0, be};
	const int64_t plane = m->n[0] * m->n[1], nz = m->n[2];
	int64_t n0, n1, mine[3] = {0, 0, 0};
	int64_t *all = malloc((size_t)d->size * 5 * sizeof(int64_t)), *rng = all ? all + 3 * d->size : NULL;
	ffdp_status s = all ? FFDP_OK : ffdp_fail(err, FFDP_ERR_NOMEM, "dist fetch: no memory for ranges");

	if (!s)
		s = check_image(m, err);
	if (!s)
		s = dist_check_backend(d, be, "dist fetch", err);
	if (!s)
		s = needed_planes(be, a, m, &n0, &n1, err);
	if (!s && n1 > n0 && !(c->p && c->z0 <= n0 && n1 <= c->z1)) {
		int64_t w = (n1 - n0) / 4 > 2 ? (n1 - n0) / 4 : 2;
		mine[0] = n0 - w > 0 ? n0 - w : 0, mine[1] = n1 + w < nz ? n1 + w : nz, mine[2] = 1;
		nb.z0 = mine[0], nb.z1 = mine[1];
		if (!(nb.p = dist_alloc(be, (nb.z1 - nb.z0) * plane, err, "dist fetch")))
			s = FFDP_ERR_NOMEM;
	}
	if ((s = ffdp_dist_agree(d, s, "dist fetch", err)))
		goto out;
	MPI_Allgather(mine, 3, MPI_INT64_T, all, 3, MPI_INT64_T, d->comm);
	int any = 0;
	for (int q = 0; q < d->size; q++) {
		/* ranks that keep their planes want none */
		any |= all[3 * q + 2] != 0;
		rng[2 * q] = all[3 * q + 2] ? all[3 * q] : 0;
		rng[2 * q + 1] = all[3 * q + 2] ? all[3 * q + 1] : 0;
	}
	if (any)
		s = fetch_exchange(d, be, m, rng, &nb, t, err);
	if (!s && mine[2]) {
		ffdp_dist_mbox_free(c);
		*c = nb, nb.p = NULL;
	}
	count_ring(d, m, t);
out:
	ffdp_dist_mbox_free(&nb);
	free(all);
	return s;
}

void ffdp_dist_set_ring(ffdp_dist *d, double frac)
{
	d->ring_frac = frac;
}

/* Some rank's range spans more than ring_frac of the nz planes? */
static int use_ring(const ffdp_dist *d, const int64_t *rng, int64_t nz)
{
	if (d->ring_frac <= 0.0)
		return 1;
	if (d->size < 3 || d->ring_frac >= 1.0)
		return 0; /* two slabs: the ring holds as much as a fetch */
	for (int q = 0; q < d->size; q++)
		if ((double)(rng[2 * q + 1] - rng[2 * q]) > d->ring_frac * (double)nz)
			return 1;
	return 0;
}

/* The planes every rank's points need (allgathered, 2 per rank). */
static ffdp_status all_ranges(ffdp_dist *d, ffdp_backend *be, const ffdp_sample_args *a, const ffdp_dist_image *m,
			      int64_t *rng, ffdp_error *err)
{
	int64_t mine[2] = {0, 0};
	ffdp_status s = check_image(m, err);
	if (!s)
		s = needed_planes(be, a, m, &mine[0], &mine[1], err);
	if ((s = ffdp_dist_agree(d, s, "dist fetch", err)))
		return s;
	MPI_Allgather(mine, 2, MPI_INT64_T, rng, 2, MPI_INT64_T, d->comm);
	return FFDP_OK;
}

/* One pass of the op over a box (sample or sample_grad on a's points). */
typedef ffdp_status (*box_fn)(void *ctx, const ffdp_sample_args *boxed, ffdp_error *err);

/* Slab q's planes with the one above it: [z0, z1). */
static ffdp_slab ring_slab(const ffdp_dist *d, int64_t nz, int q)
{
	ffdp_slab s = ffdp_slab_of(nz, q, d->size);
	if (s.z1 > s.z0 && s.z1 < nz)
		s.z1++;
	return s;
}

static ffdp_status ring_run(ffdp_dist *d, ffdp_backend *be, const ffdp_sample_args *a, const ffdp_dist_image *m,
			    box_fn fn, void *ctx, ffdp_dist_traffic *t, ffdp_error *err)
{
	const int64_t plane = m->n[0] * m->n[1], nz = m->n[2];
	const int64_t most = nz / d->size + 2;
	ffdp_slab me = ffdp_slab_of(nz, d->rank, d->size);
	const int64_t own = me.z1 - me.z0, cap = own + 2 > most ? own + 2 : most;
	float *buf[2] = {dist_scratch(d, be, cap * plane, err, "dist ring"), dist_scratch(d, be, cap * plane, err, "dist ring")};
	ffdp_status s = buf[0] && buf[1] ? FFDP_OK : FFDP_ERR_NOMEM;
	uint64_t sent = 0, recv = 0;

	/* my planes with one plane of halo each side; the one above is kept */
	if (!s && own > 0)
		s = dist_copy(be, buf[0] + plane, m->own, own * plane, err);
	if ((s = ffdp_dist_agree(d, s, "dist ring", err)) ||
	    (s = dist_halo_exchange_be(d, be, buf[0], plane, &me, 1, 0.0f, err)))
		goto out;
	int cb = 0;
	float *cur = buf[0] + plane;
	for (int k = 0; k < d->size && !s; k++) {
		int q = (d->rank + k) % d->size;
		ffdp_slab sl = ring_slab(d, nz, q), so = ffdp_slab_of(nz, q, d->size);
		if (sl.z1 > sl.z0 && a->out.n[0] * a->out.n[1] * a->out.n[2] > 0) {
			ffdp_sample_args b = *a;
			b.moving = (ffdp_img){cur, {m->n[0], m->n[1], sl.z1 - sl.z0}};
			b.m_lo[0] = b.m_lo[1] = 0, b.m_lo[2] = sl.z0;
			memcpy(b.m_full, m->n, sizeof(b.m_full));
			b.gate[0] = so.z0, b.gate[1] = so.z1;
			s = fn(ctx, &b, err);
		}
		s = ffdp_dist_agree(d, s, "dist ring", err);
		if (s || k + 1 == d->size)
			break;
		/* pass: mine to the rank below, the next slab from the rank above */
		int up = (d->rank + 1) % d->size, down = (d->rank + d->size - 1) % d->size;
		ffdp_slab nx = ring_slab(d, nz, (q + 1) % d->size);
		dist_xfer x;
		dist_xfer_init(&x, d, be);
		dist_xfer_send(&x, cur, (sl.z1 - sl.z0) * plane, down, FETCH_TAG + 1);
		dist_xfer_recv(&x, buf[1 - cb], (nx.z1 - nx.z0) * plane, up, FETCH_TAG + 1);
		s = dist_xfer_run(&x, err);
		sent += (uint64_t)((sl.z1 - sl.z0) * plane) * sizeof(float);
		recv += (uint64_t)((nx.z1 - nx.z0) * plane) * sizeof(float);
		cb = 1 - cb, cur = buf[cb];
	}
	if (t)
		t->sent += sent, t->recv += recv, t->fetches++;
	count_ring(d, m, t);
out:
	dist_scratch_put(d, be, buf[0], cap * plane), dist_scratch_put(d, be, buf[1], cap * plane);
	return s;
}

/* fn over a's points: through a fetched box, or around the ring. */
static ffdp_status moving_access(ffdp_dist *d, ffdp_backend *be, const ffdp_sample_args *a,
				 const ffdp_dist_image *m, box_fn fn, void *ctx, ffdp_dist_traffic *t, ffdp_error *err)
{
	int64_t *rng = malloc((size_t)d->size * 2 * sizeof(int64_t));
	ffdp_status s = rng ? FFDP_OK : ffdp_fail(err, FFDP_ERR_NOMEM, "dist fetch: no memory for ranges");
	if ((s = ffdp_dist_agree(d, s, "dist fetch", err)) || (s = all_ranges(d, be, a, m, rng, err))) {
		free(rng);
		return s;
	}
	int ring = use_ring(d, rng, m->n[2]);
	free(rng);
	if (ring)
		return ring_run(d, be, a, m, fn, ctx, t, err);
	ffdp_dist_mbox box;
	ffdp_sample_args b = *a;
	if (m->cache) {
		if ((s = ffdp_dist_fetch_cached(d, be, a, m, t, err)))
			return s;
		ffdp_dist_mbox_bind(m->cache, m, &b);
		return a->out.n[0] * a->out.n[1] * a->out.n[2] > 0 ? fn(ctx, &b, err) : FFDP_OK;
	}
	if ((s = ffdp_dist_fetch(d, be, a, m, &box, t, err)))
		return s;
	ffdp_dist_mbox_bind(&box, m, &b);
	if (a->out.n[0] * a->out.n[1] * a->out.n[2] > 0)
		s = fn(ctx, &b, err);
	ffdp_dist_mbox_free(&box);
	return s;
}

void ffdp_dist_mbox_free(ffdp_dist_mbox *box)
{
	ffdp_backend *be = box->be;
	dist_free(be, box->p);
	memset(box, 0, sizeof(*box));
	box->be = be;
}

void ffdp_dist_mbox_bind(const ffdp_dist_mbox *box, const ffdp_dist_image *m, ffdp_sample_args *a)
{
	a->moving = (ffdp_img){box->p, {m->n[0], m->n[1], box->z1 - box->z0}};
	a->m_lo[0] = a->m_lo[1] = 0;
	a->m_lo[2] = box->z0;
	memcpy(a->m_full, m->n, sizeof(a->m_full));
}

static ffdp_status sample_fn(void *ctx, const ffdp_sample_args *b, ffdp_error *err)
{
	return ffdp_op_sample((ffdp_backend *)ctx, b, err);
}

ffdp_status ffdp_dist_sample(ffdp_dist *d, ffdp_backend *be, const ffdp_sample_args *a,
			     const ffdp_dist_image *m, ffdp_dist_traffic *t, ffdp_error *err)
{
	return moving_access(d, be, a, m, sample_fn, be, t, err);
}

typedef struct grad_ctx {
	ffdp_backend *be;
	const ffdp_sample_grad_args *ga;
} grad_ctx;

static ffdp_status grad_fn(void *ctx, const ffdp_sample_args *b, ffdp_error *err)
{
	const grad_ctx *g = ctx;
	ffdp_sample_grad_args ga = *g->ga;
	ga.fwd = b;
	return ffdp_op_sample_grad(g->be, &ga, err);
}

ffdp_status ffdp_dist_sample_grad(ffdp_dist *d, ffdp_backend *be, const ffdp_sample_grad_args *ga,
				  const ffdp_dist_image *m, ffdp_dist_traffic *t, ffdp_error *err)
{
	grad_ctx g = {be, ga};
	if (ga->gW || ga->gW_z || ga->gM)
		return ffdp_fail(err, FFDP_ERR_ARG, "dist sample_grad: gu only (gW: ffdp_dist_fetch and gW_z)");
	return moving_access(d, be, ga->fwd, m, grad_fn, &g, t, err);
}

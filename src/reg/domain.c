/* The domain of a deformable stage (reg_internal.h): one process, or the
 * rank's z-slab under MPI.  Each function is the plain op, or its sharded
 * version in src/dist with the same bits; nothing else in the loop knows
 * which. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reg_internal.h"
#ifdef FFDP_HAVE_MPI
#include "ffdp/dist.h"
#endif

void reg_domain_init(reg_domain *dm, ffdp_backend *be, struct ffdp_dist *dist)
{
	memset(dm, 0, sizeof(*dm));
	dm->be = be;
	dm->dist = dist;
}

int reg_domain_rank(const reg_domain *dm)
{
#ifdef FFDP_HAVE_MPI
	if (dm->dist)
		return ffdp_dist_rank(dm->dist);
#endif
	(void)dm;
	return 0;
}

#ifdef FFDP_HAVE_MPI
/* The cache of image key (its planes), or NULL: no slot left, or no memory
 * (both only cost traffic). */
static ffdp_dist_mbox *dom_cache(reg_domain *dm, const float *key)
{
	for (int k = 0; k < REG_MCACHES; k++)
		if (dm->mcache[k].box && dm->mcache[k].key == key)
			return dm->mcache[k].box;
	for (int k = 0; k < REG_MCACHES; k++)
		if (!dm->mcache[k].box) {
			dm->mcache[k].box = calloc(1, sizeof(ffdp_dist_mbox));
			dm->mcache[k].key = key;
			return dm->mcache[k].box;
		}
	return NULL;
}
#endif

void reg_domain_release(reg_domain *dm)
{
	for (int k = 0; k < REG_MCACHES; k++) {
#ifdef FFDP_HAVE_MPI
		if (dm->mcache[k].box)
			ffdp_dist_mbox_free(dm->mcache[k].box);
#endif
		free(dm->mcache[k].box);
		dm->mcache[k].box = NULL, dm->mcache[k].key = NULL;
	}
}

/* The rank's planes [z0, z1) of grid g. */
static void dom_planes(const reg_domain *dm, const ffdp_grid *g, int64_t *z0, int64_t *z1)
{
	*z0 = 0, *z1 = g->n[2];
#ifdef FFDP_HAVE_MPI
	if (dm->dist) {
		ffdp_slab s = ffdp_slab_of(g->n[2], ffdp_dist_rank(dm->dist), ffdp_dist_size(dm->dist));
		*z0 = s.z0, *z1 = s.z1;
	}
#else
	(void)dm;
#endif
}

void reg_dom_box(const reg_domain *dm, const ffdp_grid *g, int64_t n[3])
{
	int64_t z0, z1;
	dom_planes(dm, g, &z0, &z1);
	n[0] = g->n[0], n[1] = g->n[1], n[2] = z1 - z0;
}

void reg_domain_level(reg_domain *dm, const ffdp_grid *g)
{
	reg_domain_release(dm); /* the level's images are new */
	dm->mask_key = NULL;
	dm->mask_max_key = NULL;
	dm->nz = g->n[2];
	dom_planes(dm, g, &dm->z0, &dm->z1);
	dm->n[0] = g->n[0], dm->n[1] = g->n[1], dm->n[2] = dm->z1 - dm->z0;
}

ffdp_img reg_dom_img(const reg_domain *dm, float *p)
{
	ffdp_img x = {p, {dm->n[0], dm->n[1], dm->n[2]}};
	return x;
}

ffdp_vec reg_dom_vec(const reg_domain *dm, const ffdp_field *f)
{
	ffdp_vec x = {{f->c[0], f->c[1], f->c[2]}, {dm->n[0], dm->n[1], dm->n[2]}, f->ncomp};
	return x;
}

static size_t box_bytes(const reg_domain *dm)
{
	/* one float more: a rank without planes still gets a buffer */
	return (size_t)(dm->n[0] * dm->n[1] * dm->n[2] + 1) * sizeof(float);
}

float *reg_dom_buf(reg_domain *dm, ffdp_error *err)
{
	return ffdp_buf_alloc(dm->be, box_bytes(dm), err);
}

ffdp_status reg_dom_field_alloc(reg_domain *dm, const ffdp_grid *g, ffdp_field *f, ffdp_error *err)
{
	if (!dm->dist)
		return reg_field_alloc(dm->be, g, f, err);
	memset(f, 0, sizeof(*f));
	f->grid = *g;
	f->ncomp = ffdp_grid_dim(g);
	for (int c = 0; c < f->ncomp; c++)
		if (!(f->c[c] = reg_dom_buf(dm, err))) {
			reg_field_free(dm->be, f);
			return FFDP_ERR_NOMEM;
		}
	return FFDP_OK;
}

#ifdef FFDP_HAVE_MPI
static ffdp_slab dom_slab(const reg_domain *dm)
{
	ffdp_slab s = {dm->nz, dm->z0, dm->z1};
	return s;
}

static void add_traffic(reg_domain *dm, const ffdp_dist_traffic *t)
{
	dm->sent += t->sent, dm->recv += t->recv, dm->fetches += t->fetches, dm->ring += t->ring;
}
#endif

ffdp_status reg_dom_plane_resample(reg_domain *dm, const float *src_own, const ffdp_grid *src_grid,
				   const ffdp_grid *g, float *dst_own, ffdp_error *err)
{
	if (!dm->dist)
		return ffdp_plane_resample(dm->be, src_own, src_grid, dst_own, g, err);
#ifdef FFDP_HAVE_MPI
	ffdp_dist_image src = {.own = (float *)src_own, .n = {src_grid->n[0], src_grid->n[1], src_grid->n[2]}};
	ffdp_dist_traffic t = {0, 0, 0, 0};
	return ffdp_dist_resample(dm->dist, dm->be, &src, src_grid, g, dst_own, &t, err);
#else
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "built without MPI");
#endif
}

ffdp_status reg_dom_field_resample(reg_domain *dm, const ffdp_field *f, const ffdp_grid *g, ffdp_field *out,
				   ffdp_error *err)
{
	if (!dm->dist)
		return ffdp_field_resample(dm->be, f, g, out, err);
	/* f's planes are those of f's grid; out's those of g (the new level) */
	ffdp_status s = reg_dom_field_alloc(dm, g, out, err);
	for (int c = 0; c < f->ncomp && !s; c++)
		s = reg_dom_plane_resample(dm, f->c[c], &f->grid, g, out->c[c], err);
	if (s)
		reg_field_free(dm->be, out);
	return s;
}

#ifdef FFDP_HAVE_MPI
/* a's output, u and lo on the rank's box. */
static void bind_box(const reg_domain *dm, ffdp_sample_args *a)
{
	a->out.n[0] = dm->n[0], a->out.n[1] = dm->n[1], a->out.n[2] = dm->n[2];
	a->lo[2] = dm->z0;
}
#endif

ffdp_status reg_dom_sample(reg_domain *dm, ffdp_sample_args *a, const ffdp_volume *src, ffdp_error *err)
{
	if (!dm->dist)
		return ffdp_op_sample(dm->be, a, err);
#ifdef FFDP_HAVE_MPI
	ffdp_dist_image m = {.own = src->data, .n = {src->grid.n[0], src->grid.n[1], src->grid.n[2]},
			     .cache = dom_cache(dm, src->data)};
	ffdp_dist_traffic t = {0, 0, 0, 0};
	bind_box(dm, a);
	ffdp_status s = ffdp_dist_sample(dm->dist, dm->be, a, &m, &t, err);
	add_traffic(dm, &t);
	return s;
#else
	(void)src;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "built without MPI");
#endif
}

ffdp_status reg_dom_sample_grad(reg_domain *dm, ffdp_sample_grad_args *ga, const ffdp_volume *src,
				ffdp_error *err)
{
	if (!dm->dist)
		return ffdp_op_sample_grad(dm->be, ga, err);
#ifdef FFDP_HAVE_MPI
	ffdp_dist_image m = {.own = src->data, .n = {src->grid.n[0], src->grid.n[1], src->grid.n[2]},
			     .cache = dom_cache(dm, src->data)};
	ffdp_dist_traffic t = {0, 0, 0, 0};
	ffdp_dist_mbox box = {NULL, 0, 0, dm->be};
	ffdp_sample_args a = *ga->fwd;
	ffdp_sample_grad_args g = *ga;
	bind_box(dm, &a);
	g.fwd = &a;
	g.gout.n[0] = dm->n[0], g.gout.n[1] = dm->n[1], g.gout.n[2] = dm->n[2];
	if (!ga->gW) {
		/* gu: fetched planes or the ring, as the forward */
		ffdp_status s = ffdp_dist_sample_grad(dm->dist, dm->be, &g, &m, &t, err);
		add_traffic(dm, &t);
		return s;
	}
	/* gW: through a fetched box, the planes' sums reduced in order */
	ffdp_status s = m.cache ? ffdp_dist_fetch_cached(dm->dist, dm->be, &a, &m, &t, err)
				: ffdp_dist_fetch(dm->dist, dm->be, &a, &m, &box, &t, err);
	if (s)
		return s;
	add_traffic(dm, &t);
	ffdp_dist_mbox_bind(m.cache ? m.cache : &box, &m, &a);
	/* gW: the planes' sums added in global plane order where the op gives
	 * them (host memory), else the ranks' sums in rank order */
	const int planes = ffdp_dist_exact_sums(dm->dist, dm->be);
	double *gz = planes ? malloc(((size_t)dm->n[2] * 12 + 1) * sizeof(double)) : NULL, tot[12], mine[12] = {0};
	if (planes && !gz)
		s = ffdp_fail(err, FFDP_ERR_NOMEM, "sample_grad: no memory for plane sums");
	g.gW = planes ? NULL : mine, g.gW_z = gz;
	if (!s && dm->n[2] > 0)
		s = ffdp_op_sample_grad(dm->be, &g, err);
	ffdp_dist_mbox_free(&box);
	ffdp_slab sl = dom_slab(dm);
	s = ffdp_dist_agree(dm->dist, s, "sample_grad", err);
	if (!s)
		s = planes ? ffdp_dist_plane_total(dm->dist, &sl, gz, 12, tot, err)
			   : ffdp_dist_rank_total(dm->dist, mine, 12, tot, err);
	for (int k = 0; k < 12 && !s; k++)
		ga->gW[k] += tot[k];
	free(gz);
	return s;
#else
	(void)src;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "built without MPI");
#endif
}

/* The mask's sum over the level: the moments op's sum of weights, formed
 * plane by plane in global order (the same bits on any number of ranks,
 * which the ops' own mask sums, blocked over the flat array, are not). */
static ffdp_status mask_sum(reg_domain *dm, const float *mask, double *sum, ffdp_error *err)
{
	if (dm->mask_key == mask) { /* the same level mask: its sum does not change */
		*sum = dm->mask_sum;
		return FFDP_OK;
	}
	double mo[10];
	ffdp_img w = reg_dom_img(dm, (float *)mask);
	ffdp_status s;
#ifdef FFDP_HAVE_MPI
	ffdp_slab sl = dom_slab(dm);
	s = dm->dist ? ffdp_dist_moments(dm->dist, dm->be, w, &sl, mo, err) : ffdp_op_moments(dm->be, w, mo, err);
#else
	s = ffdp_op_moments(dm->be, w, mo, err);
#endif
	if (!s && !(mo[0] > 0.0))
		s = ffdp_fail(err, FFDP_ERR_DATA, "the fixed mask has no positive weight at this level");
	if (!s)
		dm->mask_key = mask, dm->mask_sum = mo[0];
	*sum = mo[0];
	return s;
}

/* The level mask's maximum where it is a plain mask (finite: its sum is;
 * no negative weight): MI then needs nothing of it from the device (its
 * fixed-point quantum), once a level.  0 otherwise (MI checks it itself). */
static ffdp_status mask_max(reg_domain *dm, const float *mask, double *mx, ffdp_error *err)
{
	if (dm->mask_max_key != mask) {
		double sum, lo, hi;
		ffdp_status s = mask_sum(dm, mask, &sum, err);
		if (!s)
			s = ffdp_op_minmax(dm->be, reg_dom_img(dm, (float *)mask), &lo, &hi, err);
		if (s)
			return s;
		dm->mask_max_key = mask;
		dm->mask_max = isfinite(sum) && lo >= 0.0 && hi > 0.0 ? hi : 0.0;
	}
	*mx = dm->mask_max;
	return FFDP_OK;
}

ffdp_status reg_dom_similarity(reg_domain *dm, const ffdp_metric *mt, float *f, const uint16_t *f16, float *m,
			       const float *mask, const float *dmask, float *gf, float *gm, double scale, int64_t nvox,
			       ffdp_scalar *loss, ffdp_error *err)
{
	/* the mean's denominator: the voxel count, or dmask's weights; MI's
	 * weights' maximum where the mask is the level's (a varying mask's
	 * MI finds it itself) */
	double denom = (double)nvox, mmax = 0.0;
	ffdp_status st = dmask && mt->kind != FFDP_METRIC_MI ? mask_sum(dm, dmask, &denom, err) : FFDP_OK;
	if (!st && mask && mask == dmask && mt->kind == FFDP_METRIC_MI && !dm->dist)
		st = mask_max(dm, mask, &mmax, err);
	if (st)
		return st;
	if (!dm->dist)
		return reg_similarity(dm->be, mt, reg_dom_img(dm, f), f16, reg_dom_img(dm, m), mask, denom, mmax, gf, gm,
				      scale, loss, err);
#ifdef FFDP_HAVE_MPI
	if (f16)
		return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "distributed losses take float images");
	ffdp_slab s = dom_slab(dm);
	ffdp_loss_args a;
	memset(&a, 0, sizeof(a));
	a.f = reg_dom_img(dm, f), a.m = reg_dom_img(dm, m), a.mask = mask, a.scale = scale, a.gf = gf, a.gm = gm;
	/* synchronous: the ranks' sums are gathered in the call */
	a.loss = &loss->value, a.denom = denom;
	loss->ready = 1;
	switch (mt->kind) {
	case FFDP_METRIC_LNCC: {
		ffdp_lncc_opts o = {.k = mt->lncc_k, .exact_grad = mt->lncc_exact};
		return ffdp_dist_lncc(dm->dist, dm->be, &a, &s, &o, err);
	}
	case FFDP_METRIC_MI: {
		ffdp_mi_opts o;
		reg_mi_opts(mt, &o);
		a.denom = 0.0; /* MI's V: the histogram's total, as in one process */
		return ffdp_dist_mi(dm->dist, dm->be, &a, &s, &o, err);
	}
	case FFDP_METRIC_MSE:
		return ffdp_dist_mse(dm->dist, dm->be, &a, &s, err);
	}
	return ffdp_fail(err, FFDP_ERR_ARG, "unknown metric %d", (int)mt->kind);
#else
	(void)mt, (void)f, (void)f16, (void)m, (void)mask, (void)gf, (void)gm, (void)scale, (void)nvox, (void)loss;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "built without MPI");
#endif
}

ffdp_status reg_dom_moments(reg_domain *dm, const ffdp_volume *src, double out[10], ffdp_error *err)
{
	reg_domain_level(dm, &src->grid);
	if (!dm->dist)
		return ffdp_op_moments(dm->be, reg_dom_img(dm, src->data), out, err);
#ifdef FFDP_HAVE_MPI
	ffdp_slab s = dom_slab(dm);
	return ffdp_dist_moments(dm->dist, dm->be, reg_dom_img(dm, src->data), &s, out, err);
#else
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "built without MPI");
#endif
}

ffdp_status reg_dom_smooth_vec(reg_domain *dm, ffdp_vec x, const ffdp_smooth_opts *o, ffdp_error *err)
{
	if (!dm->dist)
		return ffdp_op_smooth_vec(dm->be, x, o, err);
#ifdef FFDP_HAVE_MPI
	ffdp_slab s = dom_slab(dm);
	return ffdp_dist_smooth_vec(dm->dist, dm->be, x, &s, o, err);
#else
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "built without MPI");
#endif
}

ffdp_status reg_dom_adam_moments(reg_domain *dm, ffdp_vec g, ffdp_vec m, ffdp_vec v, const ffdp_adam_opts *o,
				 double *max_norm, ffdp_error *err)
{
	if (!dm->dist)
		return ffdp_op_adam_moments(dm->be, g, m, v, o, max_norm, err);
#ifdef FFDP_HAVE_MPI
	/* the smoothing needs the neighbours' planes: the distributed pass */
	ffdp_adam_opts plain = *o;
	plain.smooth = NULL;
	ffdp_status st = o->smooth ? reg_dom_smooth_vec(dm, g, o->smooth, err) : FFDP_OK;
	if (st)
		return st;
	ffdp_slab s = dom_slab(dm);
	return ffdp_dist_adam_moments(dm->dist, dm->be, g, m, v, &s, &plain, max_norm, err);
#else
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "built without MPI");
#endif
}

ffdp_status reg_dom_warp_step(reg_domain *dm, ffdp_vec u, ffdp_vec m, ffdp_vec v, const ffdp_warp_step_opts *o,
			      ffdp_error *err)
{
	if (!dm->dist)
		return ffdp_op_warp_step(dm->be, u, m, v, o, err);
#ifdef FFDP_HAVE_MPI
	ffdp_slab s = dom_slab(dm);
	return ffdp_dist_warp_step(dm->dist, dm->be, u, m, v, &s, o, err);
#else
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "built without MPI");
#endif
}

/* ---- the finish: field composition and inversion on the rank's planes ---- */

#ifdef FFDP_HAVE_MPI
/* The planes of f's components that the points i + C d(i) of the rank's
 * box reach (trilinear corners, border padding), fetched over one range for
 * every component: fb views them, starting at global plane *z_lo. */
static ffdp_status fetch_field(reg_domain *dm, const ffdp_field *f, ffdp_vec d, const double C[9], int64_t margin,
			       ffdp_dist_mbox box[3], ffdp_vec *fb, int64_t *z_lo, ffdp_error *err)
{
	ffdp_sample_args a;
	ffdp_status s = FFDP_OK;
	memset(&a, 0, sizeof(a));
	a.W[0] = a.W[5] = a.W[10] = 1.0; /* fixed index -> its own grid's index */
	memcpy(a.B, C, sizeof(a.B));
	a.u = &d;
	a.lo[2] = dm->z0;
	a.out = (ffdp_img){d.c[0], {d.n[0], d.n[1], d.n[2]}};
	for (int c = 0; c < 3; c++)
		box[c] = (ffdp_dist_mbox){NULL, 0, 0, dm->be};
	for (int c = 0; c < f->ncomp && !s; c++) {
		ffdp_dist_image m = {.own = f->c[c], .n = {f->grid.n[0], f->grid.n[1], f->grid.n[2]}, .margin = margin};
		ffdp_dist_traffic t = {0, 0, 0, 0};
		s = ffdp_dist_fetch(dm->dist, dm->be, &a, &m, &box[c], &t, err);
	}
	*fb = (ffdp_vec){{box[0].p, box[1].p, box[2].p}, {f->grid.n[0], f->grid.n[1], box[0].z1 - box[0].z0},
			 f->ncomp};
	*z_lo = box[0].z0;
	return s;
}

static void free_boxes(ffdp_dist_mbox box[3])
{
	for (int c = 0; c < 3; c++)
		ffdp_dist_mbox_free(&box[c]);
}
#endif

ffdp_status reg_dom_compose(reg_domain *dm, const ffdp_field *u, ffdp_field *d, const double C[9], ffdp_error *err)
{
	ffdp_compose_args ca;
	memset(&ca, 0, sizeof(ca));
	ca.d = ca.out = reg_dom_vec(dm, d);
	ca.pad = FFDP_PAD_BORDER;
	memcpy(ca.C, C, sizeof(ca.C));
	if (!dm->dist) {
		ca.u = reg_dom_vec(dm, u);
		return ffdp_op_compose(dm->be, &ca, err);
	}
#ifdef FFDP_HAVE_MPI
	ffdp_dist_mbox box[3];
	ffdp_status s = fetch_field(dm, u, ca.d, C, 0, box, &ca.u, &ca.u_lo[2], err);
	ca.lo[2] = dm->z0;
	if (!s && dm->n[2] > 0)
		s = ffdp_op_compose(dm->be, &ca, err);
	free_boxes(box);
	return ffdp_dist_agree(dm->dist, s, "compose", err);
#else
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "built without MPI");
#endif
}

ffdp_status reg_dom_invert_step(reg_domain *dm, const ffdp_field *w, ffdp_field *v, ffdp_field *out, const double C[9],
				int iters, double tol, double *resid, ffdp_error *err)
{
	ffdp_invert_args a;
	memset(&a, 0, sizeof(a));
	a.v = reg_dom_vec(dm, v), a.out = reg_dom_vec(dm, out);
	memcpy(a.C, C, sizeof(a.C));
	a.iters = iters, a.tol = tol;
	if (!dm->dist) {
		a.w = reg_dom_vec(dm, w);
		return ffdp_op_invert_step(dm->be, &a, resid, err);
	}
#ifdef FFDP_HAVE_MPI
	ffdp_dist_mbox box[3];
	double r = 0.0;
	ffdp_status s = fetch_field(dm, w, a.v, C, iters > 1 ? iters - 1 : 0, box, &a.w, &a.w_lo[2], err);
	a.lo[2] = dm->z0;
	if (!s && dm->n[2] > 0)
		s = ffdp_op_invert_step(dm->be, &a, &r, err);
	free_boxes(box);
	s = ffdp_dist_agree(dm->dist, s, "invert step", err);
	if (!s) /* a NaN residual must win the maximum */
		*resid = ffdp_dist_max(dm->dist, r == r ? r : INFINITY);
	return s;
#else
	(void)resid;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "built without MPI");
#endif
}

ffdp_status reg_dom_vec_linear(reg_domain *dm, ffdp_field *f, const double A[9], ffdp_error *err)
{
	if (dm->n[2] == 0)
		return FFDP_OK;
	return ffdp_op_vec_linear(dm->be, reg_dom_vec(dm, f), A, reg_dom_vec(dm, f), err);
}

ffdp_grid reg_dom_host_grid(const reg_domain *dm, const ffdp_grid *g)
{
	return dm->dist ? ffdp_grid_slab(g, dm->z0, dm->z1) : *g;
}

ffdp_status reg_dom_field_download(reg_domain *dm, const ffdp_field *f, ffdp_field *host, ffdp_error *err)
{
	if (!dm->dist)
		return reg_field_download(dm->be, f, host, err);
	ffdp_grid g = reg_dom_host_grid(dm, &f->grid);
	if (dm->n[2] == 0) { /* a rank without planes: an empty field */
		memset(host, 0, sizeof(*host));
		host->grid = g, host->ncomp = f->ncomp;
		return FFDP_OK;
	}
	ffdp_status s = host->c[0] ? FFDP_OK : ffdp_field_alloc_comps(host, &g, f->ncomp, err);
	const size_t bytes = (size_t)(dm->n[0] * dm->n[1] * dm->n[2]) * sizeof(float);
	for (int c = 0; c < f->ncomp && !s; c++)
		s = ffdp_buf_download(dm->be, host->c[c], f->c[c], bytes, err);
	if (s)
		ffdp_field_free(host);
	return s;
}

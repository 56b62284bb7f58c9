/* The image pair at each pyramid level.  Intensities are mapped to [0, 1]
 * once (each image by its own range) so that MSE compares like with like,
 * MI bins are fixed, and Adam's epsilon is meaningful at every size. */
#include <stdlib.h>
#include <string.h>

#include "reg_internal.h"
#ifdef FFDP_HAVE_MPI
#include "ffdp/dist.h"
#endif

/* Upload src and map its range to [0, 1] on the backend (a constant image
 * becomes 0). */
/* dst = the pair's copy of src: the whole image, or under MPI the rank's
 * planes only (src holds all planes, or its planes only with slabs);
 * x (or NULL) of dst views it as an op image, and *host, *nhost (or NULL)
 * are the host values it was copied from. */
static ffdp_status pair_copy(const reg_pair *p, const ffdp_volume *src, int slabs, ffdp_volume *dst, ffdp_img *x,
			     const float **host, int64_t *nhost, ffdp_error *err)
{
	if (!p->dist) {
		ffdp_status s = reg_volume_upload(p->be, src, dst, err);
		if (x)
			*x = reg_img(dst);
		if (host)
			*host = src->data, *nhost = ffdp_grid_voxels(&src->grid);
		return s;
	}
	reg_domain dm;
	reg_domain_init(&dm, p->be, p->dist);
	reg_domain_level(&dm, &src->grid);
	dst->grid = src->grid;
	if (!(dst->data = reg_dom_buf(&dm, err)))
		return FFDP_ERR_NOMEM;
	if (x)
		*x = reg_dom_img(&dm, dst->data);
	const float *from = src->data + (slabs ? 0 : dm.z0 * dm.n[0] * dm.n[1]);
	if (host)
		*host = from, *nhost = dm.n[0] * dm.n[1] * dm.n[2];
	return ffdp_buf_upload(p->be, dst->data, from, (size_t)(dm.n[0] * dm.n[1] * dm.n[2]) * sizeof(float), err);
}

/* The whole image's range (NaN ignored), from the rank's planes under MPI. */
static ffdp_status pair_range(const reg_pair *p, ffdp_img x, double *lo, double *hi, ffdp_error *err)
{
#ifdef FFDP_HAVE_MPI
	if (p->dist)
		return ffdp_dist_minmax(p->dist, p->be, x, lo, hi, err);
#endif
	return ffdp_op_minmax(p->be, x, lo, hi, err);
}

/* v (normalised, backend memory) as unorm16 in *q; v's floats are freed
 * (its grid stays). */
static ffdp_status pair_pack16(const reg_pair *p, ffdp_volume *v, uint16_t **q, ffdp_error *err)
{
	*q = ffdp_buf_alloc(p->be, (size_t)ffdp_grid_voxels(&v->grid) * sizeof(uint16_t), err);
	ffdp_status s = *q ? ffdp_op_unorm16_pack(p->be, reg_img(v), *q, err) : FFDP_ERR_NOMEM;
	if (!s) {
		ffdp_buf_free(p->be, v->data);
		v->data = NULL;
	}
	return s;
}

/* q: the winsorising quantiles (ffdp_reg_opts), what the range maps to
 * [0, 1]; values beyond it are clipped. */
static ffdp_status normalised_copy(const reg_pair *p, const ffdp_volume *src, int slabs, const double q[2],
				   ffdp_volume *dst, ffdp_error *err)
{
	ffdp_backend *be = p->be;
	ffdp_img x;
	const float *host = NULL;
	int64_t nhost = 0;
	ffdp_status s = pair_copy(p, src, slabs, dst, &x, &host, &nhost, err);
	double lo = 0, hi = 0, min = 0, max = 0;
	if (!s)
		s = pair_range(p, x, &lo, &hi, err);
	if (!s && !(lo <= hi))
		s = ffdp_fail(err, FFDP_ERR_DATA, "the image is all NaN");
	min = lo, max = hi;
	if (!s)
		s = reg_winsor_range(p, host, nhost, q, &lo, &hi, err);
	if (!s && (lo != min || hi != max))
		ffdp_log_debug("winsorized to [%g, %g] (quantiles %g, %g) of [%g, %g]", lo, hi, q[0], q[1], min,
			 max);
	/* x - lo, then times the float 1 / (hi - lo): each pass rounds to float
	 * once, which is the float arithmetic (x - lo) * scale bit for bit, so
	 * results match those of the former host loop.  Setup only. */
	float scale = hi > lo ? 1.0f / (float)(hi - lo) : 0.0f;
	if (!s && x.n[2] > 0)
		s = ffdp_op_affine_scalar(be, x, 1.0, -lo, err);
	if (!s && x.n[2] > 0)
		s = ffdp_op_affine_scalar(be, x, scale, 0.0, err);
	if (!s && x.n[2] > 0 && (lo != min || hi != max))
		s = ffdp_op_clamp(be, x, 0.0, 1.0, err);
	if (s)
		reg_volume_free(be, dst);
	return s;
}

ffdp_status reg_pair_init(reg_pair *p, ffdp_backend *be, const ffdp_volume *fixed, const ffdp_volume *moving,
			  const ffdp_reg_opts *o, ffdp_error *err)
{
	memset(p, 0, sizeof(*p));
	p->be = be;
	p->fixed = fixed, p->moving = moving;
	p->min_level_size = o->min_level_size > 0 ? o->min_level_size : 32;
	p->dim = ffdp_grid_dim(&fixed->grid);
	p->dist = o->dist;
	p->moments = o->moments;
#ifndef FFDP_HAVE_MPI
	if (p->dist)
		return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "distributed registration needs a build with MPI");
#endif
	if (p->dist && p->dim != 3)
		return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "distributed registration: 3-D images only (for now)");
	if (ffdp_grid_dim(&moving->grid) != p->dim)
		return ffdp_fail(err, FFDP_ERR_DATA, "fixed image is %d-D but moving image is %d-D", p->dim,
				 ffdp_grid_dim(&moving->grid));
	if (o->fixed_mask && !ffdp_grid_same(&o->fixed_mask->grid, &fixed->grid, 1e-4))
		return ffdp_fail(err, FFDP_ERR_DATA, "fixed mask is not on the fixed image's grid");
	if (o->moving_mask && !ffdp_grid_same(&o->moving_mask->grid, &moving->grid, 1e-4))
		return ffdp_fail(err, FFDP_ERR_DATA, "moving mask is not on the moving image's grid");
	const double none[2] = {0.0, 1.0}, *q = o->winsorize[0] == 0.0 && o->winsorize[1] == 0.0 ? none : o->winsorize;
	ffdp_status s = normalised_copy(p, fixed, o->slab_inputs, q, &p->fn, err);
	if (!s && o->images16 && !p->dist)
		s = pair_pack16(p, &p->fn, &p->fq, err);
	if (!s)
		s = normalised_copy(p, moving, o->slab_inputs, q, &p->mn, err);
	if (!s && o->images16 && !p->dist)
		s = pair_pack16(p, &p->mn, &p->mq, err);
	/* the masks: the rank's planes under MPI, like the images */
	if (!s && o->fixed_mask)
		s = pair_copy(p, o->fixed_mask, o->slab_inputs, &p->fmask, NULL, NULL, NULL, err);
	if (!s && o->moving_mask)
		s = pair_copy(p, o->moving_mask, o->slab_inputs, &p->mmask, NULL, NULL, NULL, err);
	if (!s && !p->dist)
		p->lc = (reg_level_cache *)calloc(1, sizeof(*p->lc)); /* NULL: no cache, levels remade */
	if (s)
		reg_pair_free(p);
	return s;
}

static void level_cache_clear(const reg_pair *p)
{
	reg_level_cache *c = p->lc;
	for (int i = 0; c && i < c->n; i++) {
		reg_volume_free(p->be, &c->e[i].F);
		reg_volume_free(p->be, &c->e[i].M);
		ffdp_buf_free(p->be, c->e[i].fmask);
	}
	if (c)
		memset(c, 0, sizeof(*c));
}

/* The cached level at shrink into lv (1), or 0. */
static int level_cache_take(const reg_pair *p, double shrink, reg_level *lv)
{
	const reg_level_cache *c = p->lc;
	for (int i = 0; c && shrink > 1.0 && i < c->n; i++)
		if (c->e[i].shrink == shrink) {
			lv->F = c->e[i].F, lv->M = c->e[i].M, lv->fmask = c->e[i].fmask;
			lv->cached = 1;
			return 1;
		}
	return 0;
}

/* lv's images (made at shrink) handed to the cache where it has room. */
static void level_cache_put(const reg_pair *p, double shrink, reg_level *lv)
{
	reg_level_cache *c = p->lc;
	if (!c || shrink <= 1.0 || c->n >= REG_LEVEL_CACHE || lv->F16 || lv->M16)
		return;
	c->e[c->n].shrink = shrink;
	c->e[c->n].F = lv->F, c->e[c->n].M = lv->M, c->e[c->n].fmask = lv->fmask;
	c->n++;
	lv->cached = 1;
}

void reg_pair_free(reg_pair *p)
{
	level_cache_clear(p);
	free(p->lc);
	p->lc = NULL;
	reg_volume_free(p->be, &p->fn);
	reg_volume_free(p->be, &p->mn);
	ffdp_buf_free(p->be, p->fq);
	ffdp_buf_free(p->be, p->mq);
	p->fq = p->mq = NULL;
	reg_volume_free(p->be, &p->fmask);
	reg_volume_free(p->be, &p->mmask);
}

/* src's voxels as a new float volume on the backend, from q (unorm16). */
static ffdp_status pair_expand16(const reg_pair *p, const ffdp_volume *src, const uint16_t *q, ffdp_volume *dst,
				 ffdp_error *err)
{
	ffdp_status s = reg_volume_alloc(p->be, &src->grid, dst, err);
	if (!s)
		s = ffdp_op_unorm16_unpack(p->be, q, reg_img(dst), err);
	if (s)
		reg_volume_free(p->be, dst);
	return s;
}

/* The level image of src at shrink.  q: src as unorm16 (src->data NULL),
 * or NULL; at full resolution it is shared as *dst16 when take16, else
 * expanded to floats (the level owns them), and coarser levels are made
 * from a transient float copy. */
static ffdp_status level_image(const reg_pair *p, const ffdp_volume *src, const uint16_t *q, double shrink,
			       int take16, ffdp_volume *dst, const uint16_t **dst16, ffdp_error *err)
{
	*dst16 = NULL;
	if (q) {
		if (shrink <= 1.0 && take16) {
			dst->grid = src->grid, dst->data = NULL;
			*dst16 = q;
			return FFDP_OK;
		}
		ffdp_volume full = {0};
		ffdp_status s = pair_expand16(p, src, q, &full, err);
		if (s || shrink <= 1.0) {
			*dst = full;
			return s;
		}
		ffdp_grid g;
		if (!(s = ffdp_pyramid_level_grid(&src->grid, shrink, p->min_level_size, &g, err)))
			s = ffdp_pyramid_downsample(p->be, &full, &g, dst, err);
		reg_volume_free(p->be, &full);
		return s;
	}
	if (shrink <= 1.0) {
		/* shares the data: freed with the pair */
		dst->grid = src->grid, dst->data = src->data;
		return FFDP_OK;
	}
	ffdp_grid g;
	ffdp_status s = ffdp_pyramid_level_grid(&src->grid, shrink, p->min_level_size, &g, err);
	if (s || !p->dist)
		return s ? s : ffdp_pyramid_downsample(p->be, src, &g, dst, err);
#ifdef FFDP_HAVE_MPI
	reg_domain dm;
	reg_domain_init(&dm, p->be, p->dist);
	reg_domain_level(&dm, &g);
	ffdp_dist_image im = {.own = src->data, .n = {src->grid.n[0], src->grid.n[1], src->grid.n[2]}};
	dst->grid = g;
	if (!(dst->data = reg_dom_buf(&dm, err)))
		return FFDP_ERR_NOMEM;
	return ffdp_dist_downsample(p->dist, p->be, &im, &src->grid, &g, dst->data, NULL, err);
#else
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "built without MPI");
#endif
}

ffdp_status reg_level_make(const reg_pair *p, double shrink, int take16, reg_level *lv, ffdp_error *err)
{
	memset(lv, 0, sizeof(*lv));
	if (shrink <= 1.0 && take16)
		level_cache_clear(p); /* a deformable stage's full-resolution level */
	if (!level_cache_take(p, shrink, lv)) {
		ffdp_status s = level_image(p, &p->fn, p->fq, shrink, take16, &lv->F, &lv->F16, err);
		if (!s)
			s = level_image(p, &p->mn, p->mq, shrink, take16, &lv->M, &lv->M16, err);
		if (!s && p->fmask.data) {
			ffdp_volume mk = {0};
			const uint16_t *none;
			s = level_image(p, &p->fmask, NULL, shrink, 0, &mk, &none, err);
			lv->fmask = mk.data;
		}
		if (s) {
			reg_level_free(p, lv);
			return s;
		}
		level_cache_put(p, shrink, lv);
	}
	if (p->mmask.data) { /* not cached: made for each level */
		ffdp_volume mk = {0};
		const uint16_t *none;
		reg_domain dm; /* the weights: the rank's planes of F's grid */
		reg_domain_init(&dm, p->be, p->dist);
		reg_domain_level(&dm, &lv->F.grid);
		ffdp_status s = level_image(p, &p->mmask, NULL, shrink, 0, &mk, &none, err);
		lv->mmask = mk.data;
		if (!s && !(lv->wbuf = reg_dom_buf(&dm, err)))
			s = FFDP_ERR_NOMEM;
		if (s) {
			reg_level_free(p, lv);
			return s;
		}
	}
	lv->f_i2p = ffdp_grid_index_to_phys(&lv->F.grid);
	lv->f_p2i = ffdp_grid_phys_to_index(&lv->F.grid);
	lv->m_p2i = ffdp_grid_phys_to_index(&lv->M.grid);
	lv->nvox = ffdp_grid_voxels(&lv->F.grid);
	return FFDP_OK;
}

void reg_level_free(const reg_pair *p, reg_level *lv)
{
	if (lv->mmask != p->mmask.data)
		ffdp_buf_free(p->be, lv->mmask);
	ffdp_buf_free(p->be, lv->wbuf);
	lv->mmask = lv->wbuf = NULL;
	if (lv->cached) { /* the cache's */
		memset(lv, 0, sizeof(*lv));
		return;
	}
	if (lv->F.data != p->fn.data)
		reg_volume_free(p->be, &lv->F);
	if (lv->M.data != p->mn.data)
		reg_volume_free(p->be, &lv->M);
	if (lv->fmask != p->fmask.data)
		ffdp_buf_free(p->be, lv->fmask);
	memset(lv, 0, sizeof(*lv));
}

void reg_sampler_init(ffdp_sample_args *a, const ffdp_volume *src, const ffdp_mat4 *src_p2i, const ffdp_mat4 *T,
		      const reg_level *lv, float *out)
{
	memset(a, 0, sizeof(*a));
	a->moving = (ffdp_img){src->data, {src->grid.n[0], src->grid.n[1], src->grid.n[2]}};
	ffdp_mat4 w = ffdp_mat4_mul(*src_p2i, ffdp_mat4_mul(*T, lv->f_i2p));
	memcpy(a->W, w.m, 12 * sizeof(double));
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			a->B[3 * r + c] = src_p2i->m[4 * r + c];
	a->out = (ffdp_img){out, {lv->F.grid.n[0], lv->F.grid.n[1], lv->F.grid.n[2]}};
	a->pad = FFDP_PAD_BORDER;
}

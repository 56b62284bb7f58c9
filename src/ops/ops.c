/* One dispatch point: argument checks common to every backend, then the
 * backend's table entry. */
#include <math.h>
#include <stdlib.h>

#include "backend.h"
#include "linear_step.h"

ffdp_status ffdp_backend_open(ffdp_backend_kind kind, int device, ffdp_backend **out, ffdp_error *err)
{
	*out = NULL;
	switch (kind) {
	case FFDP_BACKEND_CPU:
		return ffdp_cpu_backend_open(out, err);
	case FFDP_BACKEND_CUDA:
		return ffdp_cuda_backend_open(device, out, err);
	}
	return ffdp_fail(err, FFDP_ERR_ARG, "unknown backend kind %d", (int)kind);
}

void ffdp_backend_close(ffdp_backend *be)
{
	if (be)
		be->ops->close(be);
}

ffdp_status ffdp_backend_sync(ffdp_backend *be, ffdp_error *err)
{
	return be->ops->sync ? be->ops->sync(be, err) : FFDP_OK;
}

const char *ffdp_backend_name(const ffdp_backend *be)
{
	return be->ops->name;
}

void *ffdp_buf_alloc(ffdp_backend *be, size_t bytes, ffdp_error *err)
{
	return be->ops->alloc(be, bytes, err);
}

void ffdp_buf_free(ffdp_backend *be, void *p)
{
	if (p)
		be->ops->free(be, p);
}

ffdp_status ffdp_buf_upload(ffdp_backend *be, void *dst, const void *host_src, size_t bytes, ffdp_error *err)
{
	return be->ops->upload(be, dst, host_src, bytes, err);
}

ffdp_status ffdp_buf_download(ffdp_backend *be, void *host_dst, const void *src, size_t bytes, ffdp_error *err)
{
	return be->ops->download(be, host_dst, src, bytes, err);
}

ffdp_status ffdp_buf_copy(ffdp_backend *be, void *dst, const void *src, size_t bytes, ffdp_error *err)
{
	if (!bytes)
		return FFDP_OK;
	if (!dst || !src)
		return ffdp_fail(err, FFDP_ERR_ARG, "buffer copy: NULL buffer");
	return be->ops->copy(be, dst, src, bytes, err);
}

ffdp_status ffdp_buf_zero(ffdp_backend *be, void *dst, size_t bytes, ffdp_error *err)
{
	if (!bytes)
		return FFDP_OK;
	if (!dst)
		return ffdp_fail(err, FFDP_ERR_ARG, "buffer zero: NULL buffer");
	return be->ops->zero(be, dst, bytes, err);
}

int ffdp_backend_host_memory(const ffdp_backend *be)
{
	return be->ops->host_memory;
}

/* ---- argument checks ------------------------------------------------------ */

static int dims_ok(const int64_t n[3])
{
	return n[0] > 0 && n[1] > 0 && n[2] > 0;
}

static int same_dims(const int64_t a[3], const int64_t b[3])
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2];
}

static ffdp_status check_img(const ffdp_img *x, const char *what, ffdp_error *err)
{
	if (!x->p || !dims_ok(x->n))
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: empty image view", what);
	return FFDP_OK;
}

static ffdp_status check_vec(const ffdp_vec *x, const char *what, ffdp_error *err)
{
	if (!dims_ok(x->n) || x->ncomp < 2 || x->ncomp > 3)
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: bad field view", what);
	/* one plane with 3 components: a one-plane box (shard) of a 3-D field */
	if (x->ncomp == 2 && x->n[2] != 1)
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: 2 components on a 3-D grid", what);
	for (int c = 0; c < x->ncomp; c++)
		if (!x->c[c])
			return ffdp_fail(err, FFDP_ERR_ARG, "%s: component %d is NULL", what, c);
	return FFDP_OK;
}

static ffdp_status check_vec_pair(const ffdp_vec *a, const ffdp_vec *b, const char *what, ffdp_error *err);

/* An image given as floats (x->p) or as unorm16 (q), not both. */
static ffdp_status check_src(const ffdp_img *x, const uint16_t *q, const char *what, ffdp_error *err)
{
	if (!q)
		return check_img(x, what, err);
	if (x->p)
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: an image given both as floats and as unorm16", what);
	ffdp_img v = {(float *)1, {x->n[0], x->n[1], x->n[2]}}; /* only the size is checked */
	return check_img(&v, what, err);
}

/* A float copy of a unorm16 image, in backend memory (ffdp_buf_free). */
static ffdp_status float_copy16(ffdp_backend *be, const uint16_t *q, const int64_t n[3], float **out,
				ffdp_error *err)
{
	const int64_t nv = n[0] * n[1] * n[2];
	*out = ffdp_buf_alloc(be, (size_t)(nv + 1) * sizeof(float), err);
	if (!*out)
		return FFDP_ERR_NOMEM;
	ffdp_status s = be->ops->unorm16(be, *out, (uint16_t *)q, nv, 0, err);
	if (s) {
		ffdp_buf_free(be, *out);
		*out = NULL;
	}
	return s;
}

static ffdp_status check_loss(ffdp_backend *be, const ffdp_loss_args *a, const char *what, ffdp_error *err)
{
	ffdp_status s;
	if ((s = check_src(&a->f, a->f16, what, err)) || (s = check_img(&a->m, what, err)))
		return s;
	if (!same_dims(a->f.n, a->m.n))
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: images differ in size", what);
	if (!a->loss && !a->later)
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: no loss output", what);
	if (a->later && (a->sum || a->zsum))
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: a pending loss comes without sum or zsum", what);
	if (a->zsum && !ffdp_backend_host_memory(be))
		return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "%s: per-plane sums only on host-memory backends", what);
	return FFDP_OK;
}

/* The moving sub-box of a sampler call lies inside the whole volume. */
static ffdp_status check_mbox(const ffdp_sample_args *a, const char *what, ffdp_error *err)
{
	int whole = !a->m_full[0] && !a->m_full[1] && !a->m_full[2];
	for (int k = 0; k < 3; k++) {
		if (whole ? a->m_lo[k] != 0
			  : a->m_lo[k] < 0 || a->m_full[k] < 1 || a->m_lo[k] + a->moving.n[k] > a->m_full[k])
			return ffdp_fail(err, FFDP_ERR_ARG,
					 "%s: moving box at %lld of %lld voxels does not fit a volume of %lld (axis %d)",
					 what, (long long)a->m_lo[k], (long long)a->moving.n[k],
					 (long long)a->m_full[k], k);
	}
	return FFDP_OK;
}

/* A z gate: 3-D, and no gW (a partial sum). */
static ffdp_status check_gate(ffdp_backend *be, const ffdp_sample_args *a, const double *gW, const char *what,
			      ffdp_error *err)
{
	(void)be;
	if (a->gate[1] <= a->gate[0])
		return FFDP_OK;
	if (a->out.n[2] == 1 && a->moving.n[2] == 1 && !a->m_full[2])
		return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "%s: a z gate needs a 3-D problem", what);
	if (gW)
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: no gW through a z gate", what);
	return FFDP_OK;
}

/* ---- dispatch ----------------------------------------------------------------- */

ffdp_status ffdp_op_unorm16_pack(ffdp_backend *be, ffdp_img x, uint16_t *q, ffdp_error *err)
{
	ffdp_status s = check_img(&x, "unorm16_pack", err);
	if (!s && !q)
		s = ffdp_fail(err, FFDP_ERR_ARG, "unorm16_pack: no output");
	return s ? s : be->ops->unorm16(be, x.p, q, x.n[0] * x.n[1] * x.n[2], 1, err);
}

ffdp_status ffdp_op_unorm16_unpack(ffdp_backend *be, const uint16_t *q, ffdp_img x, ffdp_error *err)
{
	ffdp_status s = check_img(&x, "unorm16_unpack", err);
	if (!s && !q)
		s = ffdp_fail(err, FFDP_ERR_ARG, "unorm16_unpack: no input");
	return s ? s : be->ops->unorm16(be, x.p, (uint16_t *)q, x.n[0] * x.n[1] * x.n[2], 0, err);
}

/* a's moving image as floats for a backend that does not read unorm16:
 * *tmp is the copy to free (NULL when none was needed). */
/* W_dev's limits (ops.h): the linear stages' call. */
static ffdp_status check_wdev(const ffdp_sample_args *a, const char *what, ffdp_error *err)
{
	if (!a->W_dev)
		return FFDP_OK;
	if (a->u || a->interp != FFDP_INTERP_LINEAR || a->gate[1] > a->gate[0] || a->m_full[0] || a->m_full[1] ||
	    a->m_full[2] || a->accumulate)
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: W_dev is for linear sampling of the whole moving image "
				 "without u, gate or accumulation", what);
	return FFDP_OK;
}

/* b = a with the moving image as floats where the backend reads no
 * unorm16, and W_dev's W in W on host-memory backends (theirs is host
 * memory: only CUDA reads W_dev itself). */
static ffdp_status sample_prepare(ffdp_backend *be, const ffdp_sample_args *a, ffdp_sample_args *b, float **tmp,
				 ffdp_error *err)
{
	*b = *a;
	*tmp = NULL;
	if (a->W_dev && be->ops->host_memory) {
		memcpy(b->W, a->W_dev->W, sizeof(b->W));
		b->W_dev = NULL;
	}
	if (!a->moving16 || (be->ops->native16 & FFDP_NATIVE16_SAMPLE))
		return FFDP_OK;
	ffdp_status s = float_copy16(be, a->moving16, a->moving.n, tmp, err);
	b->moving.p = *tmp;
	b->moving16 = NULL;
	return s;
}

ffdp_status ffdp_op_sample(ffdp_backend *be, const ffdp_sample_args *a, ffdp_error *err)
{
	ffdp_status s;
	if ((s = check_src(&a->moving, a->moving16, "sample", err)) || (s = check_img(&a->out, "sample", err)))
		return s;
	if (a->u && ((s = check_vec(a->u, "sample u", err)) || !same_dims(a->u->n, a->out.n)))
		return s ? s : ffdp_fail(err, FFDP_ERR_ARG, "sample: u and output differ in size");
	if ((s = check_mbox(a, "sample", err)) || (s = check_gate(be, a, NULL, "sample", err)) ||
	    (s = check_wdev(a, "sample", err)))
		return s;
	ffdp_sample_args b;
	float *tmp;
	if (!(s = sample_prepare(be, a, &b, &tmp, err)))
		s = be->ops->sample(be, &b, err);
	ffdp_buf_free(be, tmp);
	return s;
}

ffdp_status ffdp_op_sample_zrange(ffdp_backend *be, const ffdp_sample_args *a, double *lo, double *hi, int *nan,
				  ffdp_error *err)
{
	const int64_t *n = a->out.n;
	ffdp_status s;
	*lo = INFINITY, *hi = -INFINITY, *nan = 0;
	if (n[0] < 0 || n[1] < 0 || n[2] < 0)
		return ffdp_fail(err, FFDP_ERR_ARG, "sample_zrange: negative box size");
	if (n[0] * n[1] * n[2] == 0)
		return FFDP_OK;
	if (a->u && ((s = check_vec(a->u, "sample_zrange u", err)) || !same_dims(a->u->n, n)))
		return s ? s : ffdp_fail(err, FFDP_ERR_ARG, "sample_zrange: u and the box differ in size");
	return be->ops->sample_zrange(be, a, lo, hi, nan, err);
}

ffdp_status ffdp_op_sample_grad(ffdp_backend *be, const ffdp_sample_grad_args *a, ffdp_error *err)
{
	ffdp_status s;
	if (!a->fwd || a->fwd->interp != FFDP_INTERP_LINEAR)
		return ffdp_fail(err, FFDP_ERR_ARG, "sample_grad: only the linear sampler has a gradient");
	if ((s = check_src(&a->fwd->moving, a->fwd->moving16, "sample_grad", err)) ||
	    (s = check_img(&a->gout, "sample_grad", err)))
		return s;
	if (a->gu && (!a->fwd->u || !same_dims(a->gu->n, a->gout.n)))
		return ffdp_fail(err, FFDP_ERR_ARG, "sample_grad: gu needs u and the output box size");
	if (a->gM && !same_dims(a->gM->n, a->fwd->moving.n))
		return ffdp_fail(err, FFDP_ERR_ARG, "sample_grad: gM differs from the moving image in size");
	if ((s = check_mbox(a->fwd, "sample_grad", err)) || (s = check_gate(be, a->fwd, a->gW ? a->gW : a->gW_z, "sample_grad", err)))
		return s;
	if (a->gW_z && !ffdp_backend_host_memory(be))
		return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "sample_grad: per-plane gW only on host-memory backends");
	if (a->gW_dev && (a->gW || a->gW_z))
		return ffdp_fail(err, FFDP_ERR_ARG, "sample_grad: gW_dev comes without gW and gW_z");
	if ((s = check_wdev(a->fwd, "sample_grad", err)))
		return s;
	ffdp_sample_args f;
	float *tmp;
	if (!(s = sample_prepare(be, a->fwd, &f, &tmp, err))) {
		ffdp_sample_grad_args b = *a;
		double gw[12] = {0};
		b.fwd = &f;
		if (a->gW_dev && be->ops->host_memory)
			b.gW = gw, b.gW_dev = NULL; /* written, not added: from 0 */
		s = be->ops->sample_grad(be, &b, err);
		if (!s && a->gW_dev && be->ops->host_memory)
			memcpy(a->gW_dev, gw, sizeof(gw));
	}
	ffdp_buf_free(be, tmp);
	return s;
}

ffdp_status ffdp_op_linear_step(ffdp_backend *be, const ffdp_linear_step_args *a, ffdp_error *err)
{
	if (!a->state || !a->w || (a->step && !a->gW))
		return ffdp_fail(err, FFDP_ERR_ARG, "linear_step: state, w (and gW with step) are required");
	if (!(a->rho > 0) || !(a->lr >= 0) || (a->step && !(a->c1 > 0 && a->c2 > 0)))
		return ffdp_fail(err, FFDP_ERR_ARG, "linear_step: rho, c1 and c2 must be positive and lr not negative");
	if (be->ops->linear_step)
		return be->ops->linear_step(be, a, err);
	if (!be->ops->host_memory)
		return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "linear_step: not on %s", be->ops->name);
	ls_step(a, a->state, a->gW, a->w);
	return FFDP_OK;
}

ffdp_status ffdp_op_compose(ffdp_backend *be, const ffdp_compose_args *a, ffdp_error *err)
{
	ffdp_status s;
	if ((s = check_vec(&a->u, "compose u", err)) || (s = check_vec(&a->d, "compose d", err)) ||
	    (s = check_vec(&a->out, "compose out", err)))
		return s;
	if (!same_dims(a->d.n, a->out.n) || a->u.ncomp != a->d.ncomp)
		return ffdp_fail(err, FFDP_ERR_ARG, "compose: d and out differ");
	for (int c = 0; c < a->u.ncomp; c++)
		if (a->out.c[c] == a->u.c[c])
			return ffdp_fail(err, FFDP_ERR_ARG, "compose: out may not alias u");
	return be->ops->compose(be, a, err);
}

ffdp_status ffdp_op_invert_step(ffdp_backend *be, const ffdp_invert_args *a, double *resid, ffdp_error *err)
{
	ffdp_status s;
	if ((s = check_vec(&a->w, "invert w", err)) || (s = check_vec(&a->v, "invert v", err)) ||
	    (s = check_vec(&a->out, "invert out", err)))
		return s;
	if (!same_dims(a->v.n, a->out.n) || a->w.ncomp != a->v.ncomp || a->v.ncomp != a->out.ncomp)
		return ffdp_fail(err, FFDP_ERR_ARG, "invert: v and out differ");
	for (int c = 0; c < a->out.ncomp; c++)
		if (a->out.c[c] == a->v.c[c] || a->out.c[c] == a->w.c[c])
			return ffdp_fail(err, FFDP_ERR_ARG, "invert: out may not alias v or w");
	return be->ops->invert_step(be, a, resid, err);
}

ffdp_status ffdp_op_jacobian_det(ffdp_backend *be, const ffdp_vec *u, const double A[9], const double G[9],
				 ffdp_img out, ffdp_error *err)
{
	ffdp_status s;
	if ((s = check_vec(u, "jacobian u", err)) || (s = check_img(&out, "jacobian", err)))
		return s;
	if (!same_dims(u->n, out.n))
		return ffdp_fail(err, FFDP_ERR_ARG, "jacobian: u and output differ in size");
	return be->ops->jacobian_det(be, u, A, G, out, err);
}

ffdp_status ffdp_op_moments(ffdp_backend *be, ffdp_img x, double out[10], ffdp_error *err)
{
	ffdp_status s = check_img(&x, "moments", err);
	return s ? s : be->ops->moments(be, x, out, err);
}

ffdp_status ffdp_op_moments_planes(ffdp_backend *be, ffdp_img x, int64_t z_lo, double *out_z, ffdp_error *err)
{
	ffdp_status s = check_img(&x, "moments_planes", err);
	if (!s && (!be->ops->moments_planes || z_lo < 0))
		s = ffdp_fail(err, be->ops->moments_planes ? FFDP_ERR_ARG : FFDP_ERR_UNSUPPORTED,
			      "moments_planes: %s", be->ops->moments_planes ? "negative z_lo" : "not on this backend");
	return s ? s : be->ops->moments_planes(be, x, z_lo, out_z, err);
}

/* a's f as floats unless the backend reads unorm16 in this op (native):
 * *tmp is the copy to free (NULL when none was needed). */
static ffdp_status loss_floats(ffdp_backend *be, const ffdp_loss_args *a, unsigned native, ffdp_loss_args *b,
			       float **tmp, ffdp_error *err)
{
	*b = *a;
	*tmp = NULL;
	if (!a->f16 || (be->ops->native16 & native))
		return FFDP_OK;
	ffdp_status s = float_copy16(be, a->f16, a->f.n, tmp, err);
	b->f.p = *tmp;
	b->f16 = NULL;
	return s;
}

/* b's loss into b->later when given: ready there unless the backend
 * makes it pending (and then leaves *loss alone). */
static void loss_later(ffdp_loss_args *b)
{
	if (!b->later)
		return;
	b->later->ready = 1;
	b->loss = &b->later->value;
}

ffdp_status ffdp_scalar_get(ffdp_backend *be, ffdp_scalar *x, double *value, ffdp_error *err)
{
	ffdp_status s = FFDP_OK;
	if (!x->ready)
		s = be->ops->scalar_wait ? be->ops->scalar_wait(be, x, err)
					 : ffdp_fail(err, FFDP_ERR_ARG, "scalar_get: %s holds no pending values",
						     be->ops->name);
	if (!s)
		*value = x->value;
	return s;
}

ffdp_status ffdp_op_mse(ffdp_backend *be, const ffdp_loss_args *a, ffdp_error *err)
{
	ffdp_status s = check_loss(be, a, "mse", err);
	ffdp_loss_args b;
	float *tmp = NULL;
	if (!s && !(s = loss_floats(be, a, 0, &b, &tmp, err))) {
		loss_later(&b);
		s = be->ops->mse(be, &b, err);
	}
	ffdp_buf_free(be, tmp);
	return s;
}

ffdp_status ffdp_op_lncc(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_lncc_opts *o, ffdp_error *err)
{
	ffdp_status s = check_loss(be, a, "lncc", err);
	if (s)
		return s;
	if (o->k < 1 || o->k % 2 == 0)
		return ffdp_fail(err, FFDP_ERR_ARG, "lncc: window %d is not a positive odd number", o->k);
	if (o->z_full && !(o->o_z0 >= 0 && o->o_z0 <= o->o_z1 && o->o_z1 <= a->f.n[2]))
		return ffdp_fail(err, FFDP_ERR_ARG, "lncc: output planes [%lld, %lld) outside the box's %lld",
				 (long long)o->o_z0, (long long)o->o_z1, (long long)a->f.n[2]);
	ffdp_loss_args b;
	float *tmp;
	if (!(s = loss_floats(be, a, FFDP_NATIVE16_LNCC, &b, &tmp, err))) {
		loss_later(&b);
		s = be->ops->lncc(be, &b, o, err);
	}
	ffdp_buf_free(be, tmp);
	return s;
}

ffdp_status ffdp_op_mi(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_mi_opts *o, ffdp_error *err)
{
	ffdp_status s = check_loss(be, a, "mi", err);
	if (s)
		return s;
	if (o->bins < 4 || o->bins > 1024)
		return ffdp_fail(err, FFDP_ERR_ARG, "mi: %d bins is outside 4..1024", o->bins);
	if (!(o->f_hi > o->f_lo) || !(o->m_hi > o->m_lo))
		return ffdp_fail(err, FFDP_ERR_ARG, "mi: empty intensity range");
	if (!(o->mask_max >= 0) || isinf(o->mask_max))
		return ffdp_fail(err, FFDP_ERR_ARG, "mi: mask_max must be finite and not negative");
	if (o->hist_z && !ffdp_backend_host_memory(be))
		return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "mi: per-plane histograms only on host-memory backends");
	ffdp_loss_args b;
	float *tmp;
	if (!(s = loss_floats(be, a, 0, &b, &tmp, err))) {
		loss_later(&b);
		s = be->ops->mi(be, &b, o, err);
	}
	ffdp_buf_free(be, tmp);
	return s;
}

static ffdp_status check_sigma(const ffdp_smooth_opts *o, const char *what, ffdp_error *err)
{
	for (int a = 0; a < 3; a++)
		if (!(o->sigma[a] >= 0.0))
			return ffdp_fail(err, FFDP_ERR_ARG, "%s: negative sigma", what);
	return FFDP_OK;
}

ffdp_status ffdp_op_smooth(ffdp_backend *be, ffdp_img x, const ffdp_smooth_opts *o, ffdp_error *err)
{
	ffdp_status s = check_img(&x, "smooth", err);
	if (!s)
		s = check_sigma(o, "smooth", err);
	return s ? s : be->ops->smooth(be, x, o, err);
}

int ffdp_op_smooth_native_to(const ffdp_backend *be)
{
	return be->ops->smooth_to != NULL;
}

ffdp_status ffdp_op_smooth_to(ffdp_backend *be, ffdp_img x, ffdp_img out, const ffdp_smooth_opts *o, ffdp_error *err)
{
	ffdp_status s = check_img(&x, "smooth_to", err);
	if (!s)
		s = check_img(&out, "smooth_to out", err);
	if (!s && !same_dims(x.n, out.n))
		s = ffdp_fail(err, FFDP_ERR_ARG, "smooth_to: x and out differ in size");
	const int64_t nv = x.n[0] * x.n[1] * x.n[2];
	if (!s && out.p < x.p + nv && x.p < out.p + nv)
		s = ffdp_fail(err, FFDP_ERR_ARG, "smooth_to: x and out overlap");
	if (!s)
		s = check_sigma(o, "smooth_to", err);
	if (s)
		return s;
	return be->ops->smooth_to ? be->ops->smooth_to(be, x, out, o, err) : ffdp_smooth_to_by_copy(be, x, out, o, err);
}

ffdp_status ffdp_smooth_to_by_copy(ffdp_backend *be, ffdp_img x, ffdp_img out, const ffdp_smooth_opts *o,
				   ffdp_error *err)
{
	ffdp_status s = ffdp_buf_copy(be, out.p, x.p, (size_t)(x.n[0] * x.n[1] * x.n[2]) * sizeof(float), err);
	return s ? s : be->ops->smooth(be, out, o, err);
}

ffdp_status ffdp_op_smooth_vec_to(ffdp_backend *be, ffdp_vec x, ffdp_vec out, const ffdp_smooth_opts *o,
				  ffdp_error *err)
{
	ffdp_status s = check_vec_pair(&x, &out, "smooth_vec_to", err);
	if (!s && be->ops->smooth_vec_to) {
		/* one pass reads every component of x while it writes out */
		const int64_t nv = x.n[0] * x.n[1] * x.n[2];
		for (int c = 0; c < x.ncomp && !s; c++)
			for (int d = 0; d < x.ncomp && !s; d++)
				if (out.c[c] < x.c[d] + nv && x.c[d] < out.c[c] + nv)
					s = ffdp_fail(err, FFDP_ERR_ARG, "smooth_vec_to: x and out overlap");
		if (!s)
			s = check_sigma(o, "smooth_vec_to", err);
		return s ? s : be->ops->smooth_vec_to(be, x, out, o, err);
	}
	for (int c = 0; c < x.ncomp && !s; c++) {
		ffdp_img a = {x.c[c], {x.n[0], x.n[1], x.n[2]}}, b = {out.c[c], {x.n[0], x.n[1], x.n[2]}};
		s = ffdp_op_smooth_to(be, a, b, o, err);
	}
	return s;
}

ffdp_status ffdp_op_smooth_vec(ffdp_backend *be, ffdp_vec x, const ffdp_smooth_opts *o, ffdp_error *err)
{
	ffdp_status s = check_vec(&x, "smooth_vec", err);
	for (int c = 0; c < x.ncomp && !s; c++) {
		ffdp_img plane = {x.c[c], {x.n[0], x.n[1], x.n[2]}};
		s = ffdp_op_smooth(be, plane, o, err);
	}
	return s;
}

/* m, and v unless the moments are bf16 words in m's planes. */
static ffdp_status check_moments(const ffdp_vec *m, const ffdp_vec *v, const ffdp_adam_opts *o, const ffdp_vec *ref,
				 const char *what, ffdp_error *err)
{
	ffdp_status s;
	if (o->store != FFDP_MOMENTS_F32 && o->store != FFDP_MOMENTS_BF16)
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: unknown moment storage %d", what, (int)o->store);
	if ((s = check_vec(m, what, err)) || (o->store == FFDP_MOMENTS_F32 && (s = check_vec(v, what, err))))
		return s;
	if (!same_dims(ref->n, m->n) || m->ncomp != ref->ncomp ||
	    (o->store == FFDP_MOMENTS_F32 && (!same_dims(ref->n, v->n) || v->ncomp != ref->ncomp)))
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: fields differ in size", what);
	if (o->index0 < 0)
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: negative index0", what);
	if (o->t < 1)
		return ffdp_fail(err, FFDP_ERR_ARG, "adam: step count must start at 1");
	return FFDP_OK;
}

ffdp_status ffdp_op_adam_moments(ffdp_backend *be, ffdp_vec g, ffdp_vec m, ffdp_vec v, const ffdp_adam_opts *o,
				 double *max_norm, ffdp_error *err)
{
	ffdp_status s;
	if ((s = check_vec(&g, "adam g", err)) || (s = check_moments(&m, &v, o, &g, "adam", err)))
		return s;
	if (o->smooth && (s = check_sigma(o->smooth, "adam smooth", err)))
		return s;
	if (!o->smooth || be->ops->adam_smooth)
		return be->ops->adam_moments(be, g, m, v, o, max_norm, err);
	/* no fused pass: g smoothed in place, then the moments */
	ffdp_adam_opts plain = *o;
	plain.smooth = NULL;
	if ((s = ffdp_op_smooth_vec(be, g, o->smooth, err)))
		return s;
	return be->ops->adam_moments(be, g, m, v, &plain, max_norm, err);
}

static int shares_plane(const ffdp_vec *a, const ffdp_vec *b)
{
	for (int c = 0; c < a->ncomp; c++)
		for (int d = 0; d < b->ncomp; d++)
			if (a->c[c] == b->c[d])
				return 1;
	return 0;
}

int ffdp_op_warp_step_native_out(const ffdp_backend *be)
{
	return be->ops->warp_out;
}

ffdp_status ffdp_op_warp_step(ffdp_backend *be, ffdp_vec u, ffdp_vec m, ffdp_vec v, const ffdp_warp_step_opts *o,
			      ffdp_error *err)
{
	ffdp_status s;
	if ((s = check_vec(&u, "warp_step u", err)) || (s = check_moments(&m, &v, &o->adam, &u, "warp_step", err)))
		return s;
	if (!o->out)
		return be->ops->warp_step(be, u, m, v, o, err);
	const ffdp_vec *out = o->out;
	if ((s = check_vec_pair(&u, out, "warp_step out", err)))
		return s;
	if (shares_plane(out, &u) || shares_plane(out, &m) ||
	    (o->adam.store == FFDP_MOMENTS_F32 && shares_plane(out, &v)))
		return ffdp_fail(err, FFDP_ERR_ARG, "warp_step: out shares a plane with u, m or v");
	return be->ops->warp_out ? be->ops->warp_step(be, u, m, v, o, err) : ffdp_warp_step_by_copy(be, u, m, v, o, err);
}

ffdp_status ffdp_warp_step_by_copy(ffdp_backend *be, ffdp_vec u, ffdp_vec m, ffdp_vec v, const ffdp_warp_step_opts *o,
				   ffdp_error *err)
{
	const size_t bytes = (size_t)(u.n[0] * u.n[1] * u.n[2]) * sizeof(float);
	ffdp_status s = FFDP_OK;
	for (int c = 0; c < u.ncomp && !s; c++)
		s = ffdp_buf_copy(be, o->out->c[c], u.c[c], bytes, err);
	ffdp_warp_step_opts in_place = *o;
	in_place.out = NULL;
	return s ? s : be->ops->warp_step(be, *o->out, m, v, &in_place, err);
}

static ffdp_status moments_half(ffdp_backend *be, ffdp_img words, int half, ffdp_img x, int put, ffdp_error *err)
{
	const char *what = put ? "moments_put" : "moments_get";
	ffdp_status s;
	if ((s = check_img(&words, what, err)) || (s = check_img(&x, what, err)))
		return s;
	if (!same_dims(words.n, x.n))
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: planes differ in size", what);
	if (half != 0 && half != 1)
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: half %d is not 0 (m) or 1 (v)", what, half);
	if (words.p == x.p)
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: the words and the float plane are the same memory", what);
	return be->ops->moments_half(be, words, half, x, put, err);
}

ffdp_status ffdp_op_moments_get(ffdp_backend *be, ffdp_img words, int half, ffdp_img out, ffdp_error *err)
{
	return moments_half(be, words, half, out, 0, err);
}

ffdp_status ffdp_op_moments_put(ffdp_backend *be, ffdp_img words, int half, ffdp_img in, ffdp_error *err)
{
	return moments_half(be, words, half, in, 1, err);
}

ffdp_status ffdp_op_affine_scalar(ffdp_backend *be, ffdp_img x, double a, double b, ffdp_error *err)
{
	ffdp_status s = check_img(&x, "affine_scalar", err);
	return s ? s : be->ops->affine_scalar(be, x, a, b, err);
}

ffdp_status ffdp_op_mul(ffdp_backend *be, ffdp_img x, ffdp_img y, ffdp_error *err)
{
	ffdp_status s = check_img(&x, "mul", err);
	if (!s)
		s = check_img(&y, "mul", err);
	if (!s && (x.n[0] != y.n[0] || x.n[1] != y.n[1] || x.n[2] != y.n[2]))
		s = ffdp_fail(err, FFDP_ERR_ARG, "mul: sizes differ");
	return s ? s : be->ops->mul(be, x, y, err);
}

ffdp_status ffdp_op_clamp(ffdp_backend *be, ffdp_img x, double lo, double hi, ffdp_error *err)
{
	ffdp_status s = check_img(&x, "clamp", err);
	if (!s && !(lo <= hi))
		s = ffdp_fail(err, FFDP_ERR_ARG, "clamp: the bounds [%g, %g] are not an interval", lo, hi);
	return s ? s : be->ops->clamp(be, x, lo, hi, err);
}

ffdp_status ffdp_op_minmax(ffdp_backend *be, ffdp_img x, double *lo, double *hi, ffdp_error *err)
{
	ffdp_status s = check_img(&x, "minmax", err);
	if (!s && (!lo || !hi))
		s = ffdp_fail(err, FFDP_ERR_ARG, "minmax: no output");
	return s ? s : be->ops->minmax(be, x, lo, hi, err);
}

/* Two fields on the same grid, with a and b either the same planes or
 * disjoint ones (a partial alias would read a plane already written). */
static ffdp_status check_vec_pair(const ffdp_vec *a, const ffdp_vec *b, const char *what, ffdp_error *err)
{
	ffdp_status s;
	if ((s = check_vec(a, what, err)) || (s = check_vec(b, what, err)))
		return s;
	if (!same_dims(a->n, b->n) || a->ncomp != b->ncomp)
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: fields differ in size", what);
	for (int c = 0; c < a->ncomp; c++)
		for (int d = 0; d < a->ncomp; d++)
			if (c != d && a->c[c] == b->c[d])
				return ffdp_fail(err, FFDP_ERR_ARG, "%s: component %d of one field is component %d of the other",
						 what, c, d);
	return FFDP_OK;
}

ffdp_status ffdp_op_vec_linear(ffdp_backend *be, ffdp_vec in, const double A[9], ffdp_vec out, ffdp_error *err)
{
	ffdp_status s = check_vec_pair(&in, &out, "vec_linear", err);
	if (!s && !A)
		s = ffdp_fail(err, FFDP_ERR_ARG, "vec_linear: no matrix");
	return s ? s : be->ops->vec_linear(be, in, A, out, err);
}

ffdp_status ffdp_op_vec_max_abs_diff(ffdp_backend *be, ffdp_vec a, ffdp_vec b, double *out, ffdp_error *err)
{
	ffdp_status s = check_vec_pair(&a, &b, "vec_max_abs_diff", err);
	if (!s && !out)
		s = ffdp_fail(err, FFDP_ERR_ARG, "vec_max_abs_diff: no output");
	return s ? s : be->ops->vec_max_abs_diff(be, a, b, out, err);
}

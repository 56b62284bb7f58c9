/* Greedy and SyN deformable stages: one optimisation loop for both.
 *
 * A "side" is a displacement field with its Adam moments, the image it
 * warps and how: the moving side samples M at T(x) + u(x) (greedy and SyN);
 * SyN adds a fixed side that samples F at x + u_r(x), both meeting in the
 * middle.  Each iteration per side:
 *   warp -> loss (both sides' gradients in one call) -> dL/du by the
 *   sampler's backward -> smooth gradient -> Adam moments (max |d|) ->
 *   u <- delta + u o (Id + C delta) with delta = -lr h d / max(1, max|d|)
 *   -> smooth u.
 * h is half the finest spacing of the level, so the largest step is lr half
 * voxels; C turns a moving-frame step into a fixed-index offset, which makes
 * the update exactly phi <- phi o (Id + L^-1 delta).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "reg_internal.h"

typedef struct side {
	ffdp_field u, m, v, g; /* on the fixed level grid; backend memory */
	float *warped;         /* backend memory, like everything below */
	float *gimg;           /* dL/d(warped) */
	int img_in_g;          /* warped and gimg are planes of g (see side_level) */
	ffdp_mat4 T;           /* linear map applied before u: T for the moving side, Id for SyN's fixed side */
	int on_fixed;          /* 1: samples the fixed level image (SyN) */
	int bf16;              /* m holds bf16 words of m and v (FFDP_MOMENTS_BF16); v is empty */
	/* One process: the step's scalars stay in backend memory (no host
	 * round trip an iteration for max |d| or the ring's check); read at
	 * each level's end.  NULL under MPI (max |d| is all-reduced). */
	ffdp_step_state *state;
} side;

static void side_free_images(ffdp_backend *be, side *sd)
{
	if (!sd->img_in_g) {
		ffdp_buf_free(be, sd->warped);
		ffdp_buf_free(be, sd->gimg);
	}
	sd->warped = sd->gimg = NULL;
	sd->img_in_g = 0;
}

/* Everything but u: the optimiser's state and the per-level images. */
static void side_free_scratch(ffdp_backend *be, side *sd)
{
	reg_field_free(be, &sd->m);
	reg_field_free(be, &sd->v);
	reg_field_free(be, &sd->g);
	side_free_images(be, sd);
}

static void side_free(ffdp_backend *be, side *sd)
{
	side_free_scratch(be, sd);
	reg_field_free(be, &sd->u);
	ffdp_buf_free(be, sd->state);
	sd->state = NULL;
}

/* The faults the state recorded since the level began. */
static ffdp_status side_check(ffdp_backend *be, const side *sd, ffdp_error *err)
{
	ffdp_step_state h;
	if (!sd->state)
		return FFDP_OK;
	ffdp_status s = ffdp_buf_download(be, &h, sd->state, sizeof(h), err);
	if (!s && (h.fault & 1))
		s = ffdp_fail(err, FFDP_ERR_DATA, "the similarity's gradient is not finite (NaN or infinite values)");
	if (!s && (h.fault & 2))
		s = ffdp_fail(err, FFDP_ERR_BACKEND, "warp step: a step reached beyond its ring (internal error)");
	return s;
}

/* bf16 moment words w on grid g (the domain's level): each half of each
 * component through a float plane, resampled as float moments are.  Two
 * planes of scratch (one of w's grid, one of g's: the rank's boxes), so
 * the level change stays under an iteration's peak. */
static ffdp_status moments_resample(reg_domain *dm, const ffdp_field *w, const ffdp_grid *g, ffdp_field *out,
				    ffdp_error *err)
{
	ffdp_backend *be = dm->be;
	int64_t nw[3], nn[3];
	reg_dom_box(dm, &w->grid, nw);
	reg_dom_box(dm, g, nn);
	const ffdp_img wi = {NULL, {nw[0], nw[1], nw[2]}}, ni = {NULL, {nn[0], nn[1], nn[2]}};
	float *a = ffdp_buf_alloc(be, (size_t)(nw[0] * nw[1] * nw[2] + 1) * sizeof(float), err);
	float *b = a ? reg_dom_buf(dm, err) : NULL;
	ffdp_status s = b ? reg_dom_field_alloc(dm, g, out, err) : FFDP_ERR_NOMEM;
	for (int c = 0; c < w->ncomp && !s; c++)
		for (int half = 0; half < 2 && !s; half++) {
			ffdp_img src = wi, tmp = wi, dst = ni, res = ni;
			src.p = w->c[c], tmp.p = a, dst.p = out->c[c], res.p = b;
			if (nw[2] > 0)
				s = ffdp_op_moments_get(be, src, half, tmp, err);
			if (!s)
				s = reg_dom_plane_resample(dm, a, &w->grid, g, b, err);
			if (!s && nn[2] > 0)
				s = ffdp_op_moments_put(be, dst, half, res, err);
		}
	ffdp_buf_free(be, a);
	ffdp_buf_free(be, b);
	if (s)
		reg_field_free(be, out);
	return s;
}

/* Fields on grid g (the domain's level): fresh zeros, or the previous
 * level's resampled. */
static ffdp_status side_level(reg_domain *dm, side *sd, const ffdp_grid *g, ffdp_error *err)
{
	ffdp_backend *be = dm->be;
	ffdp_field *keep[3] = {&sd->u, &sd->m, &sd->v};
	ffdp_status s = FFDP_OK;
	/* the last level's gradient and images go first: a lower transient */
	side_free_images(be, sd);
	reg_field_free(be, &sd->g);
	for (int k = 0; k < (sd->bf16 ? 2 : 3) && !s; k++) {
		ffdp_field nf = {0};
		if (keep[k]->c[0] && k == 1 && sd->bf16)
			s = moments_resample(dm, keep[k], g, &nf, err);
		else if (keep[k]->c[0])
			s = reg_dom_field_resample(dm, keep[k], g, &nf, err);
		else
			s = reg_dom_field_alloc(dm, g, &nf, err);
		if (!s) {
			reg_field_free(be, keep[k]);
			*keep[k] = nf;
		}
	}
	if (!s)
		s = reg_dom_field_alloc(dm, g, &sd->g, err);
	if (s || dm->dist) {
		/* the ring's backward passes read gimg after writing gu */
		if (!s && (!(sd->warped = reg_dom_buf(dm, err)) || !(sd->gimg = reg_dom_buf(dm, err))))
			s = FFDP_ERR_NOMEM;
		return s;
	}
	/* The warped image is read by the loss only, and the backward to u
	 * reads each voxel's dL/d(warped) before it writes that voxel's
	 * gradient: both live in planes of g, which holds nothing between
	 * the step's update and the next backward (8 B/voxel less). */
	sd->gimg = sd->g.c[0];
	sd->warped = sd->g.c[1];
	sd->img_in_g = 1;
	return s;
}

/* L, the linear part of T, and its inverse. */
static ffdp_status linear_maps(const ffdp_mat4 *T, ffdp_mat4 *L, ffdp_mat4 *Linv, ffdp_error *err)
{
	*L = *T;
	L->m[3] = L->m[7] = L->m[11] = 0;
	return ffdp_mat4_inverse(*L, Linv, err);
}

/* The image this side samples (the rank's planes of it under MPI). */
static const ffdp_volume *side_source(const side *sd, const reg_level *lv)
{
	return sd->on_fixed ? &lv->F : &lv->M;
}

/* Sampler arguments for this side on level lv, on the domain's box. */
static void side_sampler(const reg_domain *dm, const side *sd, const reg_level *lv, const ffdp_vec *u,
			 ffdp_sample_args *a)
{
	reg_sampler_init(a, side_source(sd, lv), sd->on_fixed ? &lv->f_p2i : &lv->m_p2i, &sd->T, lv, sd->warped);
	a->moving16 = sd->on_fixed ? lv->F16 : lv->M16; /* the image as unorm16 (moving.p NULL) */
	a->out = reg_dom_img(dm, sd->warped);
	a->lo[2] = dm->z0;
	a->u = u;
}

/* u and g trade planes (one process, warped and gimg in g's planes): where
 * the backend writes a step or a smoothing out of place into the dead g. */
static void side_swap_ug(side *sd)
{
	const ffdp_field t = sd->u;
	sd->u = sd->g, sd->g = t;
	sd->gimg = sd->g.c[0], sd->warped = sd->g.c[1];
}

static ffdp_status side_step(reg_domain *dm, side *sd, const reg_level *lv, const ffdp_stage *st, int t,
			     ffdp_error *err)
{
	ffdp_vec u = reg_dom_vec(dm, &sd->u), g = reg_dom_vec(dm, &sd->g), m = reg_dom_vec(dm, &sd->m),
		 v = reg_dom_vec(dm, &sd->v);
	ffdp_sample_args sa;
	side_sampler(dm, sd, lv, &u, &sa);
	ffdp_sample_grad_args ga = {&sa, reg_dom_img(dm, sd->gimg), &g, 0, NULL, NULL, NULL, NULL};
	ffdp_status s = reg_dom_sample_grad(dm, &ga, side_source(sd, lv), err);
	if (s)
		return s;
	/* the moments take the smoothed gradient (fused where the backend
	 * can: g is dead afterwards either way) */
	ffdp_smooth_opts gs = {{st->sigma_grad, st->sigma_grad, st->sigma_grad}, 2.0, 0};
	if (lv->F.grid.n[2] == 1)
		gs.sigma[2] = 0;
	ffdp_adam_opts ao = {t, 0.9, 0.99, 1e-8, sd->bf16 ? FFDP_MOMENTS_BF16 : FFDP_MOMENTS_F32,
			     dm->z0 * u.n[0] * u.n[1], sd->state, st->sigma_grad > 0 ? &gs : NULL};
	double maxn = 0;
	if ((s = reg_dom_adam_moments(dm, g, m, v, &ao, sd->state ? NULL : &maxn, err)))
		return s;
	const double *sp = lv->F.grid.spacing;
	double h = 0.5 * fmin(sp[0], fmin(sp[1], lv->F.grid.n[2] > 1 ? sp[2] : sp[1]));
	ffdp_warp_step_opts wo;
	memset(&wo, 0, sizeof(wo));
	wo.adam = ao;
	wo.adam.smooth = NULL;
	/* with a state the op divides by max(1, max |d|) itself */
	wo.step = sd->state ? -st->lr * h : -st->lr * h / fmax(1.0, maxn);
	wo.max_norm = maxn; /* bounds the reach of the in-place composition (no state) */
	wo.compose = 1;
	wo.pad = FFDP_PAD_BORDER;
	/* C = (fixed phys -> index) L^-1 */
	ffdp_mat4 L, Linv;
	if ((s = linear_maps(&sd->T, &L, &Linv, err)))
		return s;
	ffdp_mat4 C = ffdp_mat4_mul(lv->f_p2i, Linv);
	reg_linear3(&C, wo.C);
	/* g is dead from here to the next backward: where the backend composes
	 * out of place natively, the new u goes there and the two fields swap
	 * (no ring of old planes; the same values) */
	const int swap = !dm->dist && sd->img_in_g && ffdp_op_warp_step_native_out(dm->be);
	if (swap)
		wo.out = &g;
	if ((s = reg_dom_warp_step(dm, u, m, v, &wo, err)))
		return s;
	if (swap) {
		side_swap_ug(sd);
		u = g;
	}
	ffdp_smooth_opts ws = {{st->sigma_warp, st->sigma_warp, st->sigma_warp}, 2.0, 0};
	if (lv->F.grid.n[2] == 1)
		ws.sigma[2] = 0;
	if (st->sigma_warp > 0 && swap && ffdp_op_smooth_native_to(dm->be)) {
		/* g (the old u) is still dead: smooth into it in one pass and swap back */
		ffdp_vec gn = reg_dom_vec(dm, &sd->g);
		if ((s = ffdp_op_smooth_vec_to(dm->be, u, gn, &ws, err)))
			return s;
		side_swap_ug(sd);
	} else if (st->sigma_warp > 0) {
		s = reg_dom_smooth_vec(dm, u, &ws, err);
	}
	return s;
}

static ffdp_status run_level(reg_domain *dm, const ffdp_stage *st, const reg_level *lv, side *sides, int nsides,
			     int iters, ffdp_progress *pb, int64_t *done, int *ran, double *last, ffdp_error *err)
{
	reg_iter ri;
	reg_iter_init(&ri, st, dm->be, pb, done, lv->F.grid.n);
	/* gradients wrt warped images are taken per voxel (scale = N), so
	 * Adam's epsilon stays negligible whatever the level size */
	double scale = (double)lv->nvox;
	ffdp_status s = FFDP_OK;
	int it, stop = 0;
	for (it = 0; it < iters && !s && !stop; it++) {
		/* moving side is sides[0]; SyN's fixed side sides[1] replaces F */
		ffdp_vec u[2];
		ffdp_sample_args sa[2];
		for (int k = 0; k < nsides && !s; k++) {
			u[k] = reg_dom_vec(dm, &sides[k].u);
			side_sampler(dm, &sides[k], lv, &u[k], &sa[k]);
			s = reg_dom_sample(dm, &sa[k], side_source(&sides[k], lv), err);
		}
		const float *w = NULL; /* the moving mask goes where the moving image went */
		if (!s)
			s = reg_level_weights(dm, lv, &sa[0], &w, err);
		if (s)
			break;
		float *f = nsides > 1 ? sides[1].warped : lv->F.data;
		ffdp_scalar loss; /* pending on the GPU: read after the next iteration is issued */
		s = reg_dom_similarity(dm, &st->metric, f, nsides > 1 ? NULL : lv->F16, sides[0].warped, w, lv->fmask,
				       nsides > 1 ? sides[1].gimg : NULL, sides[0].gimg, scale, lv->nvox, &loss, err);
		for (int k = 0; k < nsides && !s; k++)
			s = side_step(dm, &sides[k], lv, st, it + 1, err);
		if (!s)
			s = reg_iter_end(&ri, it, &loss, &stop, err);
	}
	*ran = it;
	if (!s)
		s = reg_iter_finish(&ri, last, err);
	for (int k = 0; k < nsides && !s; k++)
		s = side_check(dm->be, &sides[k], err);
	return s;
}

/* d <- d + u o (Id + C d), C = (fixed phys -> index) M, in place. */
static ffdp_status compose_into(reg_domain *dm, const ffdp_field *u, ffdp_field *d, const ffdp_mat4 *M,
				ffdp_error *err)
{
	double c[9];
	ffdp_mat4 C = ffdp_mat4_mul(ffdp_grid_phys_to_index(&d->grid), *M);
	reg_linear3(&C, c);
	return reg_dom_compose(dm, u, d, c, err);
}

/* f <- M f per voxel (M's 3x3 part), in place. */
static ffdp_status field_linear(reg_domain *dm, ffdp_field *f, const ffdp_mat4 *M, ffdp_error *err)
{
	double A[9];
	reg_linear3(M, A);
	return reg_dom_vec_linear(dm, f, A, err);
}

/* f to the host as *out: into the helper's field k where it is ready. */
static ffdp_status finish_download(reg_domain *dm, reg_host_fields *hf, int k, const ffdp_field *f, ffdp_field *out,
				   ffdp_error *err)
{
	const ffdp_grid g = reg_dom_host_grid(dm, &f->grid);
	reg_host_fields_take(hf, k, &g, f->ncomp, out);
	return reg_dom_field_download(dm, f, out, err);
}

/* phi = (T + u_f) o (Id + u_r)^-1 = T + [L w + u_f o (Id + w)],  w = inv(u_r);
 * its inverse displacement (ANTs convention, on the fixed grid):
 * (Id + L^-1 u)^-1 = (Id + u_r) o (Id + L^-1 u_f)^-1.
 * Works in place on the sides' u (the stage is over) and w. */
static ffdp_status syn_finish(reg_domain *dm, side *sides, const ffdp_mat4 *T, ffdp_reg_result *res,
			      int want_inverse, reg_host_fields *hf, ffdp_error *err)
{
	ffdp_field *uf = &sides[0].u, *ur = &sides[1].u;
	ffdp_field w = {0};
	ffdp_mat4 L, Linv;
	ffdp_status s = linear_maps(T, &L, &Linv, err);
	if (!s)
		s = reg_invert_field(dm, ur, &w, REG_INVERT_ITERS, err);
	if (!s)
		s = field_linear(dm, &w, &L, err);
	if (!s)
		s = compose_into(dm, uf, &w, &Linv, err);
	if (!s)
		s = finish_download(dm, hf, 0, &w, &res->u, err);
	res->has_warp = !s;
	reg_field_free(dm->be, &w);
	if (!s && want_inverse) {
		/* wf = inverse of L^-1 u_f (fixed frame), then u_inv = wf + u_r o (Id + wf) */
		ffdp_mat4 id = ffdp_mat4_identity();
		s = field_linear(dm, uf, &Linv, err);
		if (!s)
			s = reg_invert_field(dm, uf, &w, REG_INVERT_ITERS, err);
		if (!s)
			s = compose_into(dm, ur, &w, &id, err);
		if (!s)
			s = finish_download(dm, hf, 1, &w, &res->u_inv, err);
		res->has_inverse = !s;
		reg_field_free(dm->be, &w);
	}
	return s;
}

/* u to the caller; its inverse from the ANTs form w = L^-1 u (in place:
 * the stage is over). */
static ffdp_status greedy_finish(reg_domain *dm, side *sd, const ffdp_mat4 *T, ffdp_reg_result *res,
				 int want_inverse, reg_host_fields *hf, ffdp_error *err)
{
	ffdp_status s = finish_download(dm, hf, 0, &sd->u, &res->u, err);
	res->has_warp = !s;
	if (s || !want_inverse)
		return s;
	ffdp_mat4 L, Linv;
	ffdp_field winv = {0};
	s = linear_maps(T, &L, &Linv, err);
	if (!s)
		s = field_linear(dm, &sd->u, &Linv, err);
	if (!s)
		s = reg_invert_field(dm, &sd->u, &winv, REG_INVERT_ITERS, err);
	if (!s)
		s = finish_download(dm, hf, 1, &winv, &res->u_inv, err);
	res->has_inverse = !s;
	reg_field_free(dm->be, &winv);
	return s;
}

ffdp_status reg_deformable(const reg_pair *p, const ffdp_stage *st, const ffdp_mat4 *T, ffdp_reg_result *res,
			   int want_inverse, ffdp_stage_report *rep, ffdp_error *err)
{
	double t0 = ffdp_now();
	side sides[2];
	reg_domain dm;
	reg_domain_init(&dm, p->be, p->dist);
	memset(sides, 0, sizeof(sides));
	int nsides = st->kind == FFDP_STAGE_SYN ? 2 : 1;
	sides[0].T = *T;
	sides[1].T = ffdp_mat4_identity();
	sides[1].on_fixed = 1;
	sides[0].bf16 = sides[1].bf16 = p->moments == FFDP_MOMENTS_BF16;
	ffdp_status s = FFDP_OK;
	for (int k = 0; k < nsides && !s && !p->dist; k++) {
		if (!(sides[k].state = ffdp_buf_alloc(p->be, sizeof(ffdp_step_state), err)))
			s = FFDP_ERR_NOMEM;
		else
			s = ffdp_buf_zero(p->be, sides[k].state, sizeof(ffdp_step_state), err);
	}
	int64_t done = 0;
	ffdp_progress pb;
	reg_host_fields hf;
	memset(&hf, 0, sizeof(hf));
	reg_stage_begin(st, rep, &pb);
	double lap = ffdp_now();
	reg_lap(p->be, &lap);
	for (int l = 0; l < st->nlevels && !s; l++) {
		reg_level lv;
		if ((s = reg_level_make(p, st->shrink[l], 1, &lv, err)))
			break;
		reg_domain_level(&dm, &lv.F.grid);
		for (int k = 0; k < nsides && !s; k++)
			s = side_level(&dm, &sides[k], &lv.F.grid, err);
		if (!s && l == st->nlevels - 1) { /* the warp's (and inverse's) host copies, while it iterates */
			const ffdp_grid hg = reg_dom_host_grid(&dm, &lv.F.grid);
			reg_host_fields_start(&hf, p->be, &hg, sides[0].u.ncomp, want_inverse ? 2 : 1);
		}
		const double setup = reg_lap(p->be, &lap);
		if (!s)
			s = run_level(&dm, st, &lv, sides, nsides, st->iters[l], &pb, &done, &rep->iters[l],
				      &rep->final_loss, err);
		reg_level_log(st, l, lv.F.grid.n, setup, rep->iters[l], reg_lap(p->be, &lap));
		reg_level_free(p, &lv);
		done = reg_levels_done(st, l);
	}
	ffdp_progress_end(&pb);
	/* the last level must be the full-resolution fixed grid */
	if (!s && !ffdp_grid_same(&sides[0].u.grid, &p->fixed->grid, 1e-6))
		s = ffdp_fail(err, FFDP_ERR_ARG, "%s: the last level must have shrink factor 1",
			      ffdp_stage_name(st->kind));
	for (int k = 0; k < nsides; k++)
		side_free_scratch(p->be, &sides[k]); /* only u is needed from here */
	rep->fetch_sent = dm.sent, rep->fetch_recv = dm.recv, rep->fetches = dm.fetches;
	rep->fetch_ring = dm.ring;
	reg_domain_release(&dm);
	/* the finish: on every rank's planes under MPI (each gets its slab) */
	reg_lap(p->be, &lap);
	if (!s)
		s = nsides == 2 ? syn_finish(&dm, sides, T, res, want_inverse, &hf, err)
				: greedy_finish(&dm, &sides[0], T, res, want_inverse, &hf, err);
	reg_host_fields_end(&hf);
	if (!s)
		ffdp_log_debug("%s finish (the warp%s to the host): %.3f s", ffdp_stage_name(st->kind),
			       want_inverse ? " and its inverse" : "", reg_lap(p->be, &lap));
	for (int k = 0; k < nsides; k++)
		side_free(p->be, &sides[k]);
	rep->seconds = ffdp_now() - t0;
	return s;
}

/* The pipeline: stages in order, each refining T or producing the warp. */
#include <string.h>

#include "reg_internal.h"
#ifdef FFDP_HAVE_MPI
#include "ffdp/dist.h"
#endif

const char *ffdp_stage_name(ffdp_stage_kind kind)
{
	switch (kind) {
	case FFDP_STAGE_MOMENTS: return "moments";
	case FFDP_STAGE_RIGID: return "rigid";
	case FFDP_STAGE_AFFINE: return "affine";
	case FFDP_STAGE_GREEDY: return "greedy";
	case FFDP_STAGE_SYN: return "syn";
	}
	return "?";
}

static void set_levels(ffdp_stage *s, int n, const double *shrink, const int *iters)
{
	s->nlevels = n;
	for (int l = 0; l < n; l++)
		s->shrink[l] = shrink[l], s->iters[l] = iters[l];
}

/* FireANTs' defaults as measured in ../shared/reference/anchors.md (OASIS
 * runs), with an ANTs-style plateau test in place of its rise-only test. */
ffdp_stage ffdp_stage_default(ffdp_stage_kind kind)
{
	ffdp_stage s;
	memset(&s, 0, sizeof(s));
	s.kind = kind;
	s.metric.kind = FFDP_METRIC_LNCC;
	s.metric.lncc_k = 5;
	s.metric.lncc_exact = 1;
	s.metric.mi_bins = 32;
	s.metric.mi_kernel = FFDP_MI_GAUSSIAN;
	s.tol = 1e-6;
	s.window = 10;
	switch (kind) {
	case FFDP_STAGE_MOMENTS:
		s.moments_order = 2;
		set_levels(&s, 1, (double[]){4}, (int[]){0});
		break;
	case FFDP_STAGE_RIGID:
		s.lr = 3e-3;
		set_levels(&s, 3, (double[]){8, 4, 2}, (int[]){200, 100, 50});
		break;
	case FFDP_STAGE_AFFINE:
		s.lr = 3e-3;
		set_levels(&s, 4, (double[]){8, 4, 2, 1}, (int[]){200, 100, 50, 20});
		break;
	case FFDP_STAGE_GREEDY:
		/* sigma_grad 1.5, not FireANTs' 1: on OASIS 2..5 -> 1 mean Dice 0.683
		 * against 0.665, still no folded voxel (docs/registration.md) */
		s.lr = 0.5, s.sigma_grad = 1.5, s.sigma_warp = 0.5;
		set_levels(&s, 3, (double[]){4, 2, 1}, (int[]){200, 100, 25});
		break;
	case FFDP_STAGE_SYN:
		/* both halves step each iteration.  OASIS 2..10 -> 1 on the GPU
		 * (docs/registration.md): lr 0.4 and sigma_grad 1.5 give mean Dice
		 * 0.694 against 0.676 for 0.25 / 1.0, and at most 0.0003 % folded
		 * voxels with the Newton inverse; lr 0.5 folds more */
		s.lr = 0.4, s.sigma_grad = 1.5, s.sigma_warp = 0.5;
		set_levels(&s, 3, (double[]){4, 2, 1}, (int[]){100, 50, 50});
		break;
	}
	return s;
}

ffdp_status ffdp_reg_preset(const char *name, ffdp_reg_opts *o, ffdp_error *err)
{
	static const struct {
		const char *name;
		int n;
		ffdp_stage_kind k[4];
	} presets[] = {
		{"rigid", 2, {FFDP_STAGE_MOMENTS, FFDP_STAGE_RIGID}},
		{"affine", 2, {FFDP_STAGE_MOMENTS, FFDP_STAGE_AFFINE}},
		{"greedy", 3, {FFDP_STAGE_MOMENTS, FFDP_STAGE_AFFINE, FFDP_STAGE_GREEDY}},
		{"syn", 3, {FFDP_STAGE_MOMENTS, FFDP_STAGE_AFFINE, FFDP_STAGE_SYN}},
		{"default", 4, {FFDP_STAGE_MOMENTS, FFDP_STAGE_RIGID, FFDP_STAGE_AFFINE, FFDP_STAGE_SYN}},
	};
	memset(o, 0, sizeof(*o));
	o->init = ffdp_mat4_identity();
	o->min_level_size = 32;
	o->want_inverse = 1;
	/* OASIS 2..10 -> 1, GPU SyN: mean Dice 0.6944 against 0.6940 in float,
	 * no more folds, 12 B a voxel less per side (docs/registration.md) */
	o->moments = FFDP_MOMENTS_BF16;
	for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
		if (!strcmp(name, presets[i].name)) {
			o->nstages = presets[i].n;
			for (int k = 0; k < presets[i].n; k++)
				o->stages[k] = ffdp_stage_default(presets[i].k[k]);
			return FFDP_OK;
		}
	return ffdp_fail(err, FFDP_ERR_ARG, "unknown preset '%s' (rigid, affine, greedy, syn, default)", name);
}

static ffdp_status check_stage(const ffdp_stage *s, int idx, ffdp_error *err)
{
	const char *nm = ffdp_stage_name(s->kind);
	if (s->nlevels < 1 || s->nlevels > FFDP_MAX_LEVELS)
		return ffdp_fail(err, FFDP_ERR_ARG, "stage %d (%s): %d levels", idx + 1, nm, s->nlevels);
	for (int l = 0; l < s->nlevels; l++) {
		if (!(s->shrink[l] >= 1.0))
			return ffdp_fail(err, FFDP_ERR_ARG, "stage %d (%s): shrink factor %g < 1", idx + 1, nm,
					 s->shrink[l]);
		if (s->iters[l] < 0)
			return ffdp_fail(err, FFDP_ERR_ARG, "stage %d (%s): negative iterations", idx + 1, nm);
	}
	if (s->kind != FFDP_STAGE_MOMENTS && !(s->lr > 0))
		return ffdp_fail(err, FFDP_ERR_ARG, "stage %d (%s): learning rate must be positive", idx + 1, nm);
	if (s->metric.kind == FFDP_METRIC_LNCC && (s->metric.lncc_k < 1 || s->metric.lncc_k % 2 == 0))
		return ffdp_fail(err, FFDP_ERR_ARG, "stage %d (%s): LNCC window %d is not odd", idx + 1, nm,
				 s->metric.lncc_k);
	if ((s->kind == FFDP_STAGE_GREEDY || s->kind == FFDP_STAGE_SYN) && s->shrink[s->nlevels - 1] != 1.0)
		return ffdp_fail(err, FFDP_ERR_ARG, "stage %d (%s): the last shrink factor must be 1", idx + 1, nm);
	return FFDP_OK;
}

ffdp_status ffdp_register(const ffdp_volume *fixed, const ffdp_volume *moving, const ffdp_reg_opts *o,
			  ffdp_reg_result *res, ffdp_error *err)
{
	double t0 = ffdp_now();
	memset(res, 0, sizeof(*res));
	res->T = o->init;
	int ndeform = 0;
	for (int k = 0; k < o->nstages; k++) {
		ffdp_status s = check_stage(&o->stages[k], k, err);
		if (s)
			return s;
		ndeform += o->stages[k].kind == FFDP_STAGE_GREEDY || o->stages[k].kind == FFDP_STAGE_SYN;
	}
	if (ndeform > 1)
		return ffdp_fail(err, FFDP_ERR_ARG, "only one deformable stage (greedy or syn) per run");
	const double *w = o->winsorize;
	if ((w[0] != 0.0 || w[1] != 0.0) && !(w[0] >= 0.0 && w[0] < w[1] && w[1] <= 1.0))
		return ffdp_fail(err, FFDP_ERR_ARG, "winsorize: quantiles [%g, %g] are not 0 <= lo < hi <= 1", w[0],
				 w[1]);
	ffdp_backend *be = NULL;
	ffdp_status s = ffdp_backend_open(o->backend, o->device, &be, err);
#ifdef FFDP_HAVE_MPI
	if (o->dist) /* every rank opens one, or none goes on */
		s = ffdp_dist_agree(o->dist, s, "backend", err);
#endif
	if (s) {
		ffdp_backend_close(be);
		return s;
	}
#ifdef FFDP_HAVE_MPI
	if (o->dist && (s = ffdp_dist_use_backend(o->dist, be, o->dist_flags, err))) {
		ffdp_backend_close(be);
		return s;
	}
#endif
	reg_pair p;
	double lap = t0;
	if ((s = reg_pair_init(&p, be, fixed, moving, o, err))) {
		ffdp_backend_close(be);
		return s;
	}
	ffdp_log_debug("backend open, images prepared on it: %.3f s", reg_lap(be, &lap));
	for (int k = 0; k < o->nstages && !s; k++) {
		const ffdp_stage *st = &o->stages[k];
		ffdp_stage_report *rep = &res->stages[res->nstages++];
		ffdp_log_debug("stage %d: %s", k + 1, ffdp_stage_name(st->kind));
		switch (st->kind) {
		case FFDP_STAGE_MOMENTS:
			s = reg_moments(&p, st, &res->T, rep, err);
			break;
		case FFDP_STAGE_RIGID:
		case FFDP_STAGE_AFFINE:
			s = reg_linear(&p, st, &res->T, rep, err);
			break;
		case FFDP_STAGE_GREEDY:
		case FFDP_STAGE_SYN:
			s = reg_deformable(&p, st, &res->T, res, o->want_inverse, rep, err);
			break;
		}
	}
	reg_pair_free(&p);
#ifdef FFDP_HAVE_MPI
	if (o->dist)
		ffdp_dist_release(o->dist); /* its scratch is be's memory */
#endif
	ffdp_backend_close(be);
	res->seconds = ffdp_now() - t0;
	if (s)
		ffdp_reg_result_free(res);
	return s;
}

void ffdp_reg_result_free(ffdp_reg_result *res)
{
	ffdp_field_free(&res->u);
	ffdp_field_free(&res->u_inv);
	res->has_warp = res->has_inverse = 0;
}

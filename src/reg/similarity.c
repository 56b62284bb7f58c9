/* One entry for every metric, so stages never switch on the loss kind. */
#include <string.h>

#include "reg_internal.h"

void reg_mi_opts(const ffdp_metric *mt, ffdp_mi_opts *o)
{
	/* Level images are normalised to [0, 1]; a warped image with zero
	 * padding stays inside that range. */
	memset(o, 0, sizeof(*o));
	o->bins = mt->mi_bins, o->kernel = mt->mi_kernel;
	o->f_lo = 0.0, o->f_hi = 1.0, o->m_lo = 0.0, o->m_hi = 1.0;
}

ffdp_status reg_similarity(ffdp_backend *be, const ffdp_metric *mt, ffdp_img f, const uint16_t *f16, ffdp_img m,
			   const float *mask, double denom, double mask_max, float *gf, float *gm, double scale,
			   ffdp_scalar *loss, ffdp_error *err)
{
	ffdp_loss_args a;
	memset(&a, 0, sizeof(a));
	a.f = f, a.m = m, a.mask = mask, a.scale = scale, a.gf = gf, a.gm = gm, a.later = loss;
	if (f16)
		a.f.p = NULL, a.f16 = f16;
	a.denom = mt->kind == FFDP_METRIC_MI ? 0.0 : denom; /* MI's is its histogram's total */
	switch (mt->kind) {
	case FFDP_METRIC_LNCC: {
		ffdp_lncc_opts o = {.k = mt->lncc_k, .exact_grad = mt->lncc_exact, .eps = 0.0};
		return ffdp_op_lncc(be, &a, &o, err);
	}
	case FFDP_METRIC_MI: {
		ffdp_mi_opts o;
		reg_mi_opts(mt, &o);
		o.mask_max = mask ? mask_max : 0.0;
		return ffdp_op_mi(be, &a, &o, err);
	}
	case FFDP_METRIC_MSE:
		return ffdp_op_mse(be, &a, err);
	}
	return ffdp_fail(err, FFDP_ERR_ARG, "unknown metric %d", (int)mt->kind);
}

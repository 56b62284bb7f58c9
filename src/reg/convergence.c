/* Stage bookkeeping, and convergence as ANTs judges it: fit a line to the last `window` losses and
 * stop when its slope, relative to the mean loss magnitude, is below tol
 * (a plateau) or positive (the loss is rising).  FireANTs stops only on a
 * rise, which wastes iterations on plateaus (its issue #58). */
#include <math.h>
#include <stdio.h>

#include "reg_internal.h"

void reg_convergence_init(reg_convergence *c, double *storage, int window, double tol)
{
	c->hist = storage;
	c->window = window;
	c->count = 0;
	c->tol = tol;
}

int reg_convergence_push(reg_convergence *c, double loss)
{
	if (c->window < 2)
		return 0;
	c->hist[c->count % c->window] = loss;
	c->count++;
	if (c->count < c->window)
		return 0;
	/* least-squares slope over x = 0..w-1, oldest first */
	int w = c->window;
	double sx = 0, sy = 0, sxx = 0, sxy = 0, mag = 0;
	for (int k = 0; k < w; k++) {
		double y = c->hist[(c->count - w + k) % w];
		sx += k, sy += y, sxx += (double)k * k, sxy += k * y;
		mag += fabs(y);
	}
	double slope = (w * sxy - sx * sy) / (w * sxx - sx * sx);
	mag /= w;
	if (mag < 1e-12)
		mag = 1e-12;
	return slope > 0 || -slope / mag < c->tol;
}

void reg_stage_begin(const ffdp_stage *st, ffdp_stage_report *rep, ffdp_progress *pb)
{
	rep->kind = st->kind;
	rep->nlevels = st->nlevels;
	ffdp_progress_begin(pb, ffdp_stage_name(st->kind), reg_levels_done(st, st->nlevels - 1));
}

int64_t reg_levels_done(const ffdp_stage *st, int l)
{
	int64_t n = 0;
	for (int k = 0; k <= l; k++)
		n += st->iters[k];
	return n;
}

int reg_iteration_end(const ffdp_stage *st, reg_convergence *conv, ffdp_progress *pb, int64_t *done,
		      const int64_t n[3], int it, double loss)
{
	if (it % 10 == 0)
		ffdp_log_debug("%s level %lldx%lldx%lld it %d loss %.6f", ffdp_stage_name(st->kind), (long long)n[0],
			       (long long)n[1], (long long)n[2], it, loss);
	char msg[64];
	snprintf(msg, sizeof(msg), "loss %.5f", loss);
	ffdp_progress_update(pb, ++*done, msg);
	return reg_convergence_push(conv, loss);
}

double reg_lap(ffdp_backend *be, double *t)
{
	if (ffdp_log_get_level() < FFDP_LOG_DEBUG)
		return 0;
	ffdp_backend_sync(be, NULL); /* a failure shows at the next op */
	const double now = ffdp_now(), d = now - *t;
	*t = now;
	return d;
}

void reg_level_log(const ffdp_stage *st, int l, const int64_t n[3], double setup, int iters, double seconds)
{
	ffdp_log_debug("%s level %d/%d %lldx%lldx%lld: set-up %.3f s, %d iterations %.3f s (%.3f ms each)",
		       ffdp_stage_name(st->kind), l + 1, st->nlevels, (long long)n[0], (long long)n[1],
		       (long long)n[2], setup, iters, seconds, iters ? 1e3 * seconds / iters : 0.0);
}

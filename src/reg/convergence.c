/* Stage bookkeeping, and convergence as ANTs judges it: fit a line to the last `window` losses and
 * stop when its slope, relative to the mean loss magnitude, is below tol
 * (a plateau) or positive (the loss is rising).  FireANTs stops only on a
 * rise, which wastes iterations on plateaus (its issue #58).
 *
 * The lagged rule (every backend alike, so CPU and GPU stop at the same
 * iteration): the loop reads iteration it's loss only after it has issued
 * iteration it + 1, and tests it then; when the test fires the level ends
 * after iteration it + 1.  A GPU thus never waits for the loss of the
 * iteration it is running (no host round trip inside an iteration), at the
 * price of one iteration more than a test of the newest loss.  The progress
 * line and debug log follow one iteration behind; the level's last loss is
 * read after its loop (the stage's final loss). */
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

void reg_iter_init(reg_iter *ri, const ffdp_stage *st, ffdp_backend *be, ffdp_progress *pb, int64_t *done,
		   const int64_t n[3])
{
	ri->st = st, ri->be = be, ri->pb = pb, ri->done = done;
	for (int a = 0; a < 3; a++)
		ri->n[a] = n[a];
	reg_convergence_init(&ri->conv, ri->hist, st->window < 64 ? st->window : 64, st->tol);
	ri->prev_it = -1;
}

/* Iteration it's loss, read: debug log and progress. */
static void iter_report(reg_iter *ri, int it, double loss)
{
	if (it % 10 == 0)
		ffdp_log_debug("%s level %lldx%lldx%lld it %d loss %.6f", ffdp_stage_name(ri->st->kind),
			       (long long)ri->n[0], (long long)ri->n[1], (long long)ri->n[2], it, loss);
	char msg[64];
	snprintf(msg, sizeof(msg), "loss %.5f", loss);
	ffdp_progress_update(ri->pb, ++*ri->done, msg);
}

/* The previous iteration's loss, read and reported. */
static ffdp_status iter_read_prev(reg_iter *ri, double *loss, ffdp_error *err)
{
	ffdp_status s = ffdp_scalar_get(ri->be, &ri->prev, loss, err);
	if (!s)
		iter_report(ri, ri->prev_it, *loss);
	return s;
}

ffdp_status reg_iter_end(reg_iter *ri, int it, const ffdp_scalar *cur, int *stop, ffdp_error *err)
{
	*stop = 0;
	if (ri->prev_it >= 0) {
		double loss;
		ffdp_status s = iter_read_prev(ri, &loss, err);
		if (s)
			return s;
		*stop = reg_convergence_push(&ri->conv, loss);
	}
	ri->prev = *cur;
	ri->prev_it = it;
	return FFDP_OK;
}

ffdp_status reg_iter_finish(reg_iter *ri, double *last, ffdp_error *err)
{
	if (ri->prev_it < 0)
		return FFDP_OK;
	ffdp_status s = iter_read_prev(ri, last, err);
	ri->prev_it = -1;
	return s;
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

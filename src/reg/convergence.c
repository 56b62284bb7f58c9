/* Convergence as ANTs judges it: fit a line to the last `window` losses and
 * stop when its slope, relative to the mean loss magnitude, is below tol
 * (a plateau) or positive (the loss is rising).  FireANTs stops only on a
 * rise, which wastes iterations on plateaus (its issue #58). */
#include <math.h>

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

#include "ffdp/grid.h"

#include <math.h>
#include <string.h>

ffdp_grid ffdp_grid_make(int64_t nx, int64_t ny, int64_t nz, double sx, double sy, double sz)
{
	ffdp_grid g;
	memset(&g, 0, sizeof(g));
	g.n[0] = nx, g.n[1] = ny, g.n[2] = nz;
	g.spacing[0] = sx, g.spacing[1] = sy, g.spacing[2] = sz;
	g.dir[0] = g.dir[4] = g.dir[8] = 1.0;
	return g;
}

int64_t ffdp_grid_voxels(const ffdp_grid *g)
{
	return g->n[0] * g->n[1] * g->n[2];
}

int ffdp_grid_dim(const ffdp_grid *g)
{
	return g->n[2] == 1 ? 2 : 3;
}

ffdp_status ffdp_grid_check(const ffdp_grid *g, ffdp_error *err)
{
	for (int a = 0; a < 3; a++) {
		if (g->n[a] < 1)
			return ffdp_fail(err, FFDP_ERR_ARG, "grid size %lld along axis %d is not positive",
					 (long long)g->n[a], a);
		if (!(g->spacing[a] > 0.0) || !isfinite(g->spacing[a]))
			return ffdp_fail(err, FFDP_ERR_ARG, "grid spacing %g along axis %d is not positive",
					 g->spacing[a], a);
		if (!isfinite(g->origin[a]))
			return ffdp_fail(err, FFDP_ERR_ARG, "grid origin is not finite");
	}
	/* D^T D = I: columns are unit length and mutually orthogonal. */
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++) {
			double s = 0.0;
			for (int r = 0; r < 3; r++)
				s += g->dir[3 * r + i] * g->dir[3 * r + j];
			if (!(fabs(s - (i == j)) < 1e-4))
				return ffdp_fail(err, FFDP_ERR_ARG, "grid direction matrix is not orthonormal");
		}
	return FFDP_OK;
}

int ffdp_grid_same(const ffdp_grid *a, const ffdp_grid *b, double tol)
{
	for (int i = 0; i < 3; i++) {
		if (a->n[i] != b->n[i])
			return 0;
		if (fabs(a->spacing[i] - b->spacing[i]) > tol * fmax(1.0, fabs(a->spacing[i])))
			return 0;
		if (fabs(a->origin[i] - b->origin[i]) > tol)
			return 0;
	}
	for (int i = 0; i < 9; i++)
		if (fabs(a->dir[i] - b->dir[i]) > tol)
			return 0;
	return 1;
}

ffdp_mat4 ffdp_grid_index_to_phys(const ffdp_grid *g)
{
	double lin[9];
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			lin[3 * r + c] = g->dir[3 * r + c] * g->spacing[c];
	return ffdp_mat4_from_linear(lin, g->origin);
}

ffdp_mat4 ffdp_grid_phys_to_index(const ffdp_grid *g)
{
	/* D orthonormal: inverse is diag(1/s) D^T, no general inversion needed. */
	double lin[9], t[3];
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			lin[3 * r + c] = g->dir[3 * c + r] / g->spacing[r];
	for (int r = 0; r < 3; r++)
		t[r] = -(lin[3 * r] * g->origin[0] + lin[3 * r + 1] * g->origin[1] + lin[3 * r + 2] * g->origin[2]);
	return ffdp_mat4_from_linear(lin, t);
}

void ffdp_grid_point(const ffdp_grid *g, const double idx[3], double p[3])
{
	ffdp_mat4 m = ffdp_grid_index_to_phys(g);
	ffdp_mat4_apply_point(&m, idx, p);
}

ffdp_grid ffdp_grid_slab(const ffdp_grid *g, int64_t z0, int64_t z1)
{
	ffdp_grid s = *g;
	const double idx[3] = {0.0, 0.0, (double)z0};
	ffdp_grid_point(g, idx, s.origin);
	s.n[2] = z1 - z0;
	return s;
}

void ffdp_grid_center(const ffdp_grid *g, double c[3])
{
	double idx[3];
	for (int a = 0; a < 3; a++)
		idx[a] = 0.5 * (double)(g->n[a] - 1);
	ffdp_grid_point(g, idx, c);
}

void ffdp_grid_orientation(const ffdp_grid *g, char out[4])
{
	static const char pos[3] = {'L', 'P', 'S'}, neg[3] = {'R', 'A', 'I'};
	for (int j = 0; j < 3; j++) {
		int best = 0;
		for (int r = 1; r < 3; r++)
			if (fabs(g->dir[3 * r + j]) > fabs(g->dir[3 * best + j]))
				best = r;
		out[j] = g->dir[3 * best + j] >= 0 ? pos[best] : neg[best];
	}
	out[3] = '\0';
}

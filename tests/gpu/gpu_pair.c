/* Host/device pairs for the GPU tests (gpu_pair.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_pair.h"

static void die(const char *what, const ffdp_error *err)
{
	fprintf(stderr, "%s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
	exit(2);
}

float *gp_h_new(int64_t n)
{
	float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
	if (!p)
		die("out of host memory", NULL);
	return p;
}

float *gp_d_dup(gp_env *e, const float *x, int64_t n)
{
	float *p = ffdp_buf_alloc(e->gpu, (size_t)n * sizeof(float), &e->err);
	if (!p || ffdp_buf_upload(e->gpu, p, x, (size_t)n * sizeof(float), &e->err))
		die("GPU buffer", &e->err);
	return p;
}

float *gp_d_get(gp_env *e, const float *d, int64_t n)
{
	float *p = gp_h_new(n);
	if (ffdp_buf_download(e->gpu, p, d, (size_t)n * sizeof(float), &e->err))
		die("GPU download", &e->err);
	return p;
}

double gp_rel(const float *a, const float *b, int64_t n)
{
	double d = 0, m = 0;
	for (int64_t i = 0; i < n; i++) {
		d = fmax(d, fabs((double)a[i] - (double)b[i]));
		m = fmax(m, fabs((double)b[i]));
	}
	return isnan(d) || !(m > 0) ? INFINITY : d / m;
}

double gp_rel_dev(gp_env *e, const float *d, const float *h, int64_t n)
{
	float *g = gp_d_get(e, d, n);
	double r = gp_rel(g, h, n);
	free(g);
	return r;
}

/* Voxels of device d that differ from host h: by value, or by bits (which
 * also tells -0 from 0 and one NaN from another). */
static int64_t count_diffs(gp_env *e, const float *d, const float *h, int64_t n, int bits)
{
	float *g = gp_d_get(e, d, n);
	int64_t k = 0;
	for (int64_t i = 0; i < n; i++)
		k += bits ? memcmp(&g[i], &h[i], sizeof(float)) != 0 : g[i] != h[i];
	free(g);
	return k;
}

int64_t gp_mismatches(gp_env *e, const float *d, const float *h, int64_t n)
{
	return count_diffs(e, d, h, n, 0);
}

int64_t gp_bit_diffs(gp_env *e, const float *d, const float *h, int64_t n)
{
	return count_diffs(e, d, h, n, 1);
}

gp_vec gp_vec_new(gp_env *e, const int64_t n[3], double lo, double hi)
{
	gp_vec p;
	memset(&p, 0, sizeof(p));
	p.nv = n[0] * n[1] * n[2];
	p.h.ncomp = p.d.ncomp = n[2] == 1 ? 2 : 3;
	for (int a = 0; a < 3; a++)
		p.h.n[a] = p.d.n[a] = n[a];
	for (int c = 0; c < p.h.ncomp; c++) {
		p.h.c[c] = gp_h_new(p.nv);
		tu_fill_uniform(&e->rng, p.h.c[c], p.nv, lo, hi);
		p.d.c[c] = gp_d_dup(e, p.h.c[c], p.nv);
	}
	return p;
}

void gp_vec_free(gp_env *e, gp_vec *p)
{
	for (int c = 0; c < p->h.ncomp; c++) {
		free(p->h.c[c]);
		ffdp_buf_free(e->gpu, p->d.c[c]);
		p->h.c[c] = p->d.c[c] = NULL;
	}
}

double gp_vec_rel(gp_env *e, const gp_vec *p)
{
	double r = 0;
	for (int c = 0; c < p->h.ncomp; c++)
		r = fmax(r, gp_rel_dev(e, p->d.c[c], p->h.c[c], p->nv));
	return r;
}

int64_t gp_vec_bit_diffs(gp_env *e, const gp_vec *p)
{
	int64_t k = 0;
	for (int c = 0; c < p->h.ncomp; c++)
		k += gp_bit_diffs(e, p->d.c[c], p->h.c[c], p->nv);
	return k;
}

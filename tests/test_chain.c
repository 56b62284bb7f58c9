/* Transform chains in ANTs order against double-precision references:
 * each transform applied to the point in the order listed, fields sampled
 * trilinearly with zero outside their grid, then the input sampled at the
 * mapped point. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/chain.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static int64_t vidx(const int64_t n[3], int64_t x, int64_t y, int64_t z)
{
	return (z * n[1] + y) * n[0] + x;
}

/* Place g so that its centre is at c. */
static void centre_on(ffdp_grid *g, const double c[3])
{
	double now[3];
	ffdp_grid_center(g, now);
	for (int a = 0; a < 3; a++)
		g->origin[a] += c[a] - now[a];
}

/* A 2-D grid keeps its direction in the plane. */
static ffdp_grid random_grid(tu_rng *r, int64_t nx, int64_t ny, int64_t nz)
{
	ffdp_grid g = tu_random_grid(r, nx, ny, nz);
	if (nz == 1) {
		double t = 6.283185307179586 * tu_uniform(r);
		double R[9] = {cos(t), -sin(t), 0, sin(t), cos(t), 0, 0, 0, 1};
		memcpy(g.dir, R, sizeof(R));
		g.origin[2] = 0;
	}
	return g;
}

/* c + L (x - c) + t with L near the identity; z untouched in 2-D. */
static ffdp_mat4 random_affine(tu_rng *r, const double c[3], int dim)
{
	double L[9], t[3], off[3];
	for (int i = 0; i < 9; i++)
		L[i] = (i % 4 == 0 ? 1.0 : 0.0) + 0.2 * (tu_uniform(r) - 0.5);
	for (int a = 0; a < 3; a++)
		t[a] = 6.0 * (tu_uniform(r) - 0.5);
	if (dim == 2) {
		L[2] = L[5] = L[6] = L[7] = 0, L[8] = 1, t[2] = 0;
	}
	for (int a = 0; a < 3; a++)
		off[a] = c[a] + t[a] - (L[3 * a] * c[0] + L[3 * a + 1] * c[1] + L[3 * a + 2] * c[2]);
	return ffdp_mat4_from_linear(L, off);
}

/* Trilinear (bilinear when nz = 1) at physical point p, zero outside. */
static double ref_sample(const float *data, const ffdp_grid *g, const double p[3])
{
	ffdp_mat4 p2i = ffdp_grid_phys_to_index(g);
	double q[3];
	ffdp_mat4_apply_point(&p2i, p, q);
	int dim = g->n[2] == 1 ? 2 : 3;
	int64_t i0[3] = {0, 0, 0};
	double f[3] = {0, 0, 0};
	for (int a = 0; a < dim; a++) {
		i0[a] = (int64_t)floor(q[a]);
		f[a] = q[a] - (double)i0[a];
	}
	double s = 0;
	for (int k = 0; k < (dim == 3 ? 8 : 4); k++) {
		int64_t c[3] = {i0[0] + (k & 1), i0[1] + ((k >> 1) & 1), i0[2] + ((k >> 2) & 1)};
		double w = 1;
		for (int a = 0; a < dim; a++)
			w *= ((k >> a) & 1) ? f[a] : 1 - f[a];
		if (c[0] < 0 || c[1] < 0 || c[2] < 0 || c[0] >= g->n[0] || c[1] >= g->n[1] || c[2] >= g->n[2])
			continue;
		s += w * data[vidx(g->n, c[0], c[1], c[2])];
	}
	return s;
}

/* Label vote at p: the label with the largest summed weight, and its margin
 * over the runner-up; -1 when a corner falls outside. */
static int ref_label(const float *data, const ffdp_grid *g, const double p[3], double *margin)
{
	ffdp_mat4 p2i = ffdp_grid_phys_to_index(g);
	double q[3], acc[16] = {0};
	ffdp_mat4_apply_point(&p2i, p, q);
	for (int k = 0; k < 8; k++) {
		int64_t c[3];
		double w = 1;
		for (int a = 0; a < 3; a++) {
			double fl = floor(q[a]), f = q[a] - fl;
			c[a] = (int64_t)fl + ((k >> a) & 1);
			w *= ((k >> a) & 1) ? f : 1 - f;
			if (c[a] < 0 || c[a] >= g->n[a])
				return -1;
		}
		acc[(int)data[vidx(g->n, c[0], c[1], c[2])]] += w;
	}
	int best = 0;
	for (int l = 1; l < 16; l++)
		best = acc[l] > acc[best] ? l : best;
	double second = -1;
	for (int l = 0; l < 16; l++)
		if (l != best)
			second = fmax(second, acc[l]);
	*margin = acc[best] - second;
	return best;
}

static void point_of(const ffdp_grid *g, int64_t i, double p[3])
{
	double idx[3] = {(double)(i % g->n[0]), (double)((i / g->n[0]) % g->n[1]), (double)(i / (g->n[0] * g->n[1]))};
	ffdp_grid_point(g, idx, p);
}

static void field_at(const ffdp_field *w, const double p[3], double out[3])
{
	out[2] = 0;
	for (int c = 0; c < w->ncomp; c++)
		out[c] = ref_sample(w->c[c], &w->grid, p);
}

static void make_field(tu_rng *r, ffdp_field *w, const ffdp_grid *g, double amp)
{
	ffdp_error err = {0};
	ffdp_field_alloc(w, g, &err);
	for (int c = 0; c < w->ncomp; c++) {
		tu_fill_smooth(r, w->c[c], g->n, 0.0);
		for (int64_t i = 0; i < ffdp_grid_voxels(g); i++)
			w->c[c][i] = (float)(amp * (w->c[c][i] - 0.5));
	}
}

/* max |out - ref| / max |ref| where ref is in(map(x)) for map given as a callback. */
typedef void (*map_fn)(const void *ctx, const double x[3], double y[3]);

static double chain_error(const ffdp_volume *out, const ffdp_volume *in, map_fn map, const void *ctx)
{
	int64_t n = ffdp_grid_voxels(&out->grid);
	double *ref = malloc(sizeof(double) * n);
	for (int64_t i = 0; i < n; i++) {
		double x[3], y[3];
		point_of(&out->grid, i, x);
		map(ctx, x, y);
		ref[i] = ref_sample(in->data, &in->grid, y);
	}
	double e = tu_rel_err(out->data, ref, n, 1e-3);
	free(ref);
	return e;
}

static double max_diff(const ffdp_volume *a, const ffdp_volume *b)
{
	double d = 0;
	for (int64_t i = 0; i < ffdp_grid_voxels(&a->grid); i++)
		d = fmax(d, fabs((double)a->data[i] - b->data[i]));
	return d;
}

/* ---- the point maps of the chains under test --------------------------------- */

typedef struct map_ctx {
	const ffdp_mat4 *A;
	const ffdp_field *w1, *w2;
} map_ctx;

static void map_affine(const void *c, const double x[3], double y[3])
{
	ffdp_mat4_apply_point(((const map_ctx *)c)->A, x, y);
}

static void map_field(const void *c, const double x[3], double y[3])
{
	double d[3];
	field_at(((const map_ctx *)c)->w1, x, d);
	for (int a = 0; a < 3; a++)
		y[a] = x[a] + d[a];
}

/* -t w -t A: A(x + w(x)) */
static void map_field_affine(const void *c, const double x[3], double y[3])
{
	double t[3];
	map_field(c, x, t);
	map_affine(c, t, y);
}

/* -t A -t w: A x + w(A x) */
static void map_affine_field(const void *c, const double x[3], double y[3])
{
	double t[3], d[3];
	map_affine(c, x, t);
	field_at(((const map_ctx *)c)->w1, t, d);
	for (int a = 0; a < 3; a++)
		y[a] = t[a] + d[a];
}

/* -t w1 -t A -t w2: p = A(x + w1(x)), then p + w2(p) */
static void map_w_a_w(const void *c, const double x[3], double y[3])
{
	double t[3], d[3];
	map_field_affine(c, x, t);
	field_at(((const map_ctx *)c)->w2, t, d);
	for (int a = 0; a < 3; a++)
		y[a] = t[a] + d[a];
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_affine(ffdp_backend *be, tu_rng *r)
{
	ffdp_error err = {0};
	ffdp_grid gi = random_grid(r, 26, 22, 18), gr = random_grid(r, 22, 20, 15);
	double c[3];
	ffdp_grid_center(&gi, c);
	centre_on(&gr, c);
	ffdp_volume in = {0}, out = {0}, direct = {0};
	ffdp_volume_alloc(&in, &gi, &err);
	tu_fill_smooth(r, in.data, gi.n, 0.0);
	ffdp_mat4 A = random_affine(r, c, 3);
	ffdp_chain_item it = {FFDP_CHAIN_AFFINE, A, 0, NULL};
	CHECK_OK(ffdp_chain_resample(be, &in, &gr, &it, 1, FFDP_INTERP_LINEAR, &out, &err), &err, "chain [A]: runs");
	CHECK_OK(ffdp_warp_volume(be, &in, &gr, &A, NULL, FFDP_INTERP_LINEAR, &direct, &err), &err,
		 "warp_volume with T = A: runs");
	double d = out.data && direct.data ? max_diff(&out, &direct) : INFINITY;
	CHECK(d <= 1e-6, "chain [A] = ffdp_warp_volume(T = A) (max diff %.1e)", d);
	map_ctx m = {&A, NULL, NULL};
	double e = out.data ? chain_error(&out, &in, map_affine, &m) : INFINITY;
	CHECK(e < 1e-5, "chain [A] = in(A x) in double (rel err %.1e)", e);
	ffdp_volume_free(&out), ffdp_volume_free(&direct), ffdp_volume_free(&in);
}

static void test_inverse_pair(ffdp_backend *be, tu_rng *r)
{
	ffdp_error err = {0};
	ffdp_grid g = random_grid(r, 24, 21, 17);
	double c[3];
	ffdp_grid_center(&g, c);
	ffdp_volume in = {0}, out = {0}, moved = {0};
	ffdp_volume_alloc(&in, &g, &err);
	tu_fill_smooth(r, in.data, g.n, 0.05);
	ffdp_mat4 A = random_affine(r, c, 3);
	ffdp_chain_item it[2] = {{FFDP_CHAIN_AFFINE, A, 0, NULL}, {FFDP_CHAIN_AFFINE, A, 1, NULL}};
	CHECK_OK(ffdp_chain_resample(be, &in, &g, it, 2, FFDP_INTERP_LINEAR, &out, &err), &err, "chain [A, [A,1]]: runs");
	CHECK_OK(ffdp_chain_resample(be, &in, &g, it, 1, FFDP_INTERP_LINEAR, &moved, &err), &err, "chain [A]: runs");
	double d = out.data ? max_diff(&out, &in) : INFINITY, dm = moved.data ? max_diff(&moved, &in) : 0;
	CHECK(d < 1e-5 && dm > 0.05, "[A, [A,1]] reproduces the input (max diff %.1e) while [A] alone moves it (%.3f)", d,
	      dm);
	ffdp_volume_free(&out), ffdp_volume_free(&moved), ffdp_volume_free(&in);
}

/* One field, both orders with an affine, the inverse form, and three items over several slabs. */
static void test_fields(ffdp_backend *be, tu_rng *r, int64_t nx, int64_t ny, int64_t nz)
{
	ffdp_error err = {0};
	int dim = nz == 1 ? 2 : 3;
	const char *tag = dim == 3 ? "3-D" : "2-D";
	ffdp_grid gi = random_grid(r, nx + 6, ny + 4, nz == 1 ? 1 : nz / 3 + 4);
	ffdp_grid gr = random_grid(r, nx, ny, nz);
	ffdp_grid gw1 = random_grid(r, nx / 2 + 3, ny / 2 + 2, nz == 1 ? 1 : nz / 4 + 3);
	ffdp_grid gw2 = random_grid(r, nx / 3 + 4, ny / 3 + 3, nz == 1 ? 1 : nz / 5 + 3);
	/* the input spans the reference; the fields cover part of it, so the zero outside shows */
	gi.spacing[2] = dim == 3 ? gr.spacing[2] * (double)nz / (double)gi.n[2] : gi.spacing[2];
	double c[3];
	ffdp_grid_center(&gr, c);
	centre_on(&gi, c);
	for (int a = 0; a < 3; a++)
		gw1.spacing[a] *= 1.5, gw2.spacing[a] *= 1.5;
	centre_on(&gw1, c);
	double c2[3] = {c[0] + 3, c[1] - 2, c[2] + (dim == 3 ? 4 : 0)};
	centre_on(&gw2, c2);
	ffdp_volume in = {0}, o1 = {0}, o2 = {0}, o3 = {0}, o4 = {0}, o5 = {0};
	ffdp_volume_alloc(&in, &gi, &err);
	tu_fill_smooth(r, in.data, gi.n, 0.0);
	ffdp_field w1 = {0}, w2 = {0};
	make_field(r, &w1, &gw1, 8.0);
	make_field(r, &w2, &gw2, 8.0);
	ffdp_mat4 A = random_affine(r, c, dim), Ainv;
	ffdp_mat4_inverse(A, &Ainv, &err);
	map_ctx m = {&A, &w1, &w2}, minv = {&Ainv, &w1, NULL};
	ffdp_chain_item F1 = {FFDP_CHAIN_FIELD, ffdp_mat4_identity(), 0, &w1};
	ffdp_chain_item F2 = {FFDP_CHAIN_FIELD, ffdp_mat4_identity(), 0, &w2};
	ffdp_chain_item AF = {FFDP_CHAIN_AFFINE, A, 0, NULL}, AI = {FFDP_CHAIN_AFFINE, A, 1, NULL};

	CHECK_OK(ffdp_chain_resample(be, &in, &gr, &F1, 1, FFDP_INTERP_LINEAR, &o1, &err), &err, "%s chain [w]: runs", tag);
	double e = o1.data ? chain_error(&o1, &in, map_field, &m) : INFINITY;
	CHECK(e < 1e-4, "%s chain [w] = in(x + w(x)), w on its own oblique grid, zero outside (rel err %.1e)", tag, e);

	ffdp_chain_item wa[2] = {F1, AF}, aw[2] = {AF, F1}, iw[2] = {AI, F1}, waw[3] = {F1, AF, F2};
	CHECK_OK(ffdp_chain_resample(be, &in, &gr, wa, 2, FFDP_INTERP_LINEAR, &o2, &err), &err, "%s chain [w, A]: runs", tag);
	e = o2.data ? chain_error(&o2, &in, map_field_affine, &m) : INFINITY;
	CHECK(e < 1e-4, "%s ANTs order: -t w -t A maps x to A(x + w(x)) (rel err %.1e)", tag, e);
	CHECK_OK(ffdp_chain_resample(be, &in, &gr, aw, 2, FFDP_INTERP_LINEAR, &o3, &err), &err, "%s chain [A, w]: runs", tag);
	e = o3.data ? chain_error(&o3, &in, map_affine_field, &m) : INFINITY;
	double d = o2.data && o3.data ? max_diff(&o2, &o3) : 0;
	CHECK(e < 1e-4 && d > 0.02, "%s -t A -t w maps x to A x + w(A x) (rel err %.1e), unlike the other order (diff %.3f)",
	      tag, e, d);
	CHECK_OK(ffdp_chain_resample(be, &in, &gr, iw, 2, FFDP_INTERP_LINEAR, &o4, &err), &err,
		 "%s chain [[A,1], w]: runs", tag);
	e = o4.data ? chain_error(&o4, &in, map_affine_field, &minv) : INFINITY;
	CHECK(e < 1e-4, "%s -t [A,1] -t w maps y to z + w(z), z = A^-1 y (rel err %.1e)", tag, e);
	CHECK_OK(ffdp_chain_resample(be, &in, &gr, waw, 3, FFDP_INTERP_LINEAR, &o5, &err), &err,
		 "%s chain [w1, A, w2] over %lld planes: runs", tag, (long long)nz);
	e = o5.data ? chain_error(&o5, &in, map_w_a_w, &m) : INFINITY;
	CHECK(e < 1e-4, "%s -t w1 -t A -t w2: p = A(x + w1(x)), then p + w2(p) (rel err %.1e)", tag, e);
	ffdp_volume_free(&in), ffdp_volume_free(&o1), ffdp_volume_free(&o2), ffdp_volume_free(&o3);
	ffdp_volume_free(&o4), ffdp_volume_free(&o5);
	ffdp_field_free(&w1), ffdp_field_free(&w2);
}

static void fill_labels(tu_rng *r, ffdp_volume *v)
{
	const int64_t *n = v->grid.n;
	for (int b = 0; b < 12; b++) {
		int64_t lo[3], hi[3];
		for (int a = 0; a < 3; a++) {
			lo[a] = (int64_t)(tu_uniform(r) * (double)n[a]);
			hi[a] = lo[a] + 2 + (int64_t)(tu_uniform(r) * (double)n[a] * 0.5);
			hi[a] = hi[a] > n[a] ? n[a] : hi[a];
		}
		float l = (float)(1 + tu_next(r) % 9);
		for (int64_t z = lo[2]; z < hi[2]; z++)
			for (int64_t y = lo[1]; y < hi[1]; y++)
				for (int64_t x = lo[0]; x < hi[0]; x++)
					v->data[vidx(n, x, y, z)] = l;
	}
}

static void test_labels(ffdp_backend *be, tu_rng *r)
{
	ffdp_error err = {0};
	/* an integer voxel shift: nearest and label resampling are exact shifts */
	ffdp_grid g = ffdp_grid_make(20, 18, 16, 1.2, 0.9, 1.5);
	ffdp_volume in = {0}, nn = {0}, lab = {0};
	ffdp_volume_alloc(&in, &g, &err);
	fill_labels(r, &in);
	int64_t t[3] = {3, -2, 1};
	double off[3] = {t[0] * 1.2, t[1] * 0.9, t[2] * 1.5}, I[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
	ffdp_chain_item it = {FFDP_CHAIN_AFFINE, ffdp_mat4_from_linear(I, off), 0, NULL};
	CHECK_OK(ffdp_chain_resample(be, &in, &g, &it, 1, FFDP_INTERP_NEAREST, &nn, &err), &err, "nearest shift: runs");
	CHECK_OK(ffdp_chain_resample(be, &in, &g, &it, 1, FFDP_INTERP_LABEL, &lab, &err), &err, "label shift: runs");
	int64_t bad = 0, checked = 0, moved = 0;
	for (int64_t z = 0; z < 16 && nn.data && lab.data; z++)
		for (int64_t y = 0; y < 18; y++)
			for (int64_t x = 0; x < 20; x++) {
				int64_t s[3] = {x + t[0], y + t[1], z + t[2]};
				if (s[0] < 0 || s[1] < 0 || s[2] < 0 || s[0] >= 20 || s[1] >= 18 || s[2] >= 16)
					continue;
				float want = in.data[vidx(g.n, s[0], s[1], s[2])];
				int64_t i = vidx(g.n, x, y, z);
				bad += nn.data[i] != want || lab.data[i] != want;
				moved += in.data[i] != want;
				checked++;
			}
	CHECK(checked > 2000 && bad == 0 && moved > 100,
	      "integer shift (3,-2,1) voxels: nearest and label give in(i + t) at all %lld inside voxels (%lld wrong)",
	      (long long)checked, (long long)bad);
	ffdp_volume_free(&nn), ffdp_volume_free(&lab), ffdp_volume_free(&in);

	/* a general affine on oblique grids: label = largest summed trilinear weight */
	ffdp_grid gi = random_grid(r, 24, 22, 18), gr = random_grid(r, 20, 18, 16);
	double c[3];
	ffdp_grid_center(&gi, c);
	centre_on(&gr, c);
	ffdp_volume_alloc(&in, &gi, &err);
	fill_labels(r, &in);
	ffdp_mat4 A = random_affine(r, c, 3);
	it.A = A;
	CHECK_OK(ffdp_chain_resample(be, &in, &gr, &it, 1, FFDP_INTERP_LABEL, &lab, &err), &err, "label affine: runs");
	bad = checked = 0;
	for (int64_t i = 0; i < ffdp_grid_voxels(&gr) && lab.data; i++) {
		double x[3], y[3], margin;
		point_of(&gr, i, x);
		ffdp_mat4_apply_point(&A, x, y);
		int want = ref_label(in.data, &gi, y, &margin);
		if (want < 0 || margin < 1e-4)
			continue;
		checked++;
		bad += (int)lab.data[i] != want;
	}
	CHECK(checked > 1000 && bad == 0, "label interpolation = largest summed trilinear weight at %lld voxels (%lld wrong)",
	      (long long)checked, (long long)bad);
	ffdp_volume_free(&lab), ffdp_volume_free(&in);
}

static void test_refusals(ffdp_backend *be)
{
	ffdp_error err = {0};
	ffdp_grid g3 = ffdp_grid_make(8, 8, 8, 1, 1, 1), g2 = ffdp_grid_make(8, 8, 1, 1, 1, 1);
	ffdp_volume in = {0}, out = {0}, in2 = {0};
	ffdp_field w = {0}, w2 = {0};
	ffdp_volume_alloc(&in, &g3, &err), ffdp_volume_alloc(&in2, &g2, &err);
	ffdp_field_alloc(&w, &g3, &err), ffdp_field_alloc(&w2, &g2, &err);
	ffdp_chain_item inv = {FFDP_CHAIN_FIELD, ffdp_mat4_identity(), 1, &w};
	ffdp_status s = ffdp_chain_resample(be, &in, &g3, &inv, 1, FFDP_INTERP_LINEAR, &out, &err);
	CHECK(s == FFDP_ERR_ARG && !out.data, "an inverted field is refused: %s", err.msg);
	ffdp_chain_item f2 = {FFDP_CHAIN_FIELD, ffdp_mat4_identity(), 0, &w2};
	s = ffdp_chain_resample(be, &in, &g3, &f2, 1, FFDP_INTERP_LINEAR, &out, &err);
	CHECK(s == FFDP_ERR_DATA, "a 2-D field in a 3-D chain is refused: %s", err.msg);
	s = ffdp_chain_resample(be, &in2, &g3, NULL, 0, FFDP_INTERP_LINEAR, &out, &err);
	CHECK(s == FFDP_ERR_DATA, "a 2-D input on a 3-D reference is refused: %s", err.msg);
	ffdp_chain_item sing = {FFDP_CHAIN_AFFINE, ffdp_mat4_identity(), 1, NULL};
	sing.A.m[5] = 0;
	s = ffdp_chain_resample(be, &in, &g3, &sing, 1, FFDP_INTERP_LINEAR, &out, &err);
	CHECK(s == FFDP_ERR_DATA && !out.data, "inverting a singular affine is refused: %s", err.msg);
	ffdp_volume_free(&in), ffdp_volume_free(&in2);
	ffdp_field_free(&w), ffdp_field_free(&w2);
}

int main(void)
{
	tu_rng r = tu_rng_make(777);
	ffdp_error err = {0};
	ffdp_backend *be = NULL;
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "CPU backend opens");
	test_refusals(be);
	test_affine(be, &r);
	test_inverse_pair(be, &r);
	test_fields(be, &r, 64, 48, 160); /* 3072-voxel planes: the field sums run over 2 slabs */
	test_fields(be, &r, 70, 60, 1);
	test_labels(be, &r);
	ffdp_backend_close(be);
	return check_done();
}

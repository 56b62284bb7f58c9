/* Evaluation metrics against counting, brute force and analytic cases:
 * Dice on boxes, the exact EDT and HD95 against O(N^2) references on
 * oblique anisotropic grids, spheres, Jacobian statistics against a double
 * central-difference reference (through slabs), NCC of affine intensity maps. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/eval.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

/* ---- helpers ---------------------------------------------------------------- */

static int64_t vidx(const int64_t n[3], int64_t x, int64_t y, int64_t z)
{
	return (z * n[1] + y) * n[0] + x;
}

static void paint_box(ffdp_volume *v, float label, const int64_t lo[3], const int64_t hi[3])
{
	for (int64_t z = lo[2]; z < hi[2]; z++)
		for (int64_t y = lo[1]; y < hi[1]; y++)
			for (int64_t x = lo[0]; x < hi[0]; x++)
				v->data[vidx(v->grid.n, x, y, z)] = label;
}

static const ffdp_label_stats *find_label(const ffdp_label_eval *e, int64_t label)
{
	for (int i = 0; i < e->nlabels; i++)
		if (e->labels[i].label == label)
			return &e->labels[i];
	return NULL;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Boundary by the definition: a voxel of the label with a face neighbour
 * outside the image or of another label (z neighbours only in 3-D). */
static int ref_is_boundary(const ffdp_volume *v, int64_t x, int64_t y, int64_t z, int label)
{
	const int64_t *n = v->grid.n;
	if ((int)lround(v->data[vidx(n, x, y, z)]) != label)
		return 0;
	int64_t p[3] = {x, y, z};
	int dim = n[2] == 1 ? 2 : 3;
	for (int a = 0; a < dim; a++)
		for (int s = -1; s <= 1; s += 2) {
			int64_t q[3] = {p[0], p[1], p[2]};
			q[a] += s;
			if (q[a] < 0 || q[a] >= n[a])
				return 1;
			if ((int)lround(v->data[vidx(n, q[0], q[1], q[2])]) != label)
				return 1;
		}
	return 0;
}

/* Boundary voxels' physical points (full oblique index->phys map). */
static int64_t ref_boundary_points(const ffdp_volume *v, int label, double *pts)
{
	const int64_t *n = v->grid.n;
	int64_t k = 0;
	for (int64_t z = 0; z < n[2]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t x = 0; x < n[0]; x++)
				if (ref_is_boundary(v, x, y, z, label)) {
					double idx[3] = {(double)x, (double)y, (double)z};
					ffdp_grid_point(&v->grid, idx, pts + 3 * k);
					k++;
				}
	return k;
}

static double nearest(const double *p, const double *set, int64_t n)
{
	double best = INFINITY;
	for (int64_t j = 0; j < n; j++) {
		double d = 0;
		for (int a = 0; a < 3; a++)
			d += (p[a] - set[3 * j + a]) * (p[a] - set[3 * j + a]);
		best = d < best ? d : best;
	}
	return sqrt(best);
}

/* O(N^2) HD95: pooled nearest-boundary distances, numpy-style percentile. */
static double ref_hd95(const ffdp_volume *a, const ffdp_volume *b, int label)
{
	int64_t nv = ffdp_grid_voxels(&a->grid);
	double *pa = malloc(sizeof(double) * 3 * nv), *pb = malloc(sizeof(double) * 3 * nv);
	int64_t na = ref_boundary_points(a, label, pa), nb = ref_boundary_points(b, label, pb);
	double *d = malloc(sizeof(double) * (na + nb));
	for (int64_t i = 0; i < na; i++)
		d[i] = nearest(pa + 3 * i, pb, nb);
	for (int64_t i = 0; i < nb; i++)
		d[na + i] = nearest(pb + 3 * i, pa, na);
	int64_t n = na + nb;
	qsort(d, (size_t)n, sizeof(double), cmp_d);
	double r = 0.95 * (double)(n - 1);
	int64_t k = (int64_t)floor(r);
	double h = k >= n - 1 ? d[n - 1] : d[k] + (r - (double)k) * (d[k + 1] - d[k]);
	free(pa), free(pb), free(d);
	return h;
}

/* Random label map: boxes of labels 1..3 on background, plus 3 % speckle. */
static void random_labels(tu_rng *r, ffdp_volume *v)
{
	const int64_t *n = v->grid.n;
	memset(v->data, 0, sizeof(float) * (size_t)ffdp_grid_voxels(&v->grid));
	for (int b = 0; b < 7; b++) {
		int64_t lo[3], hi[3];
		for (int a = 0; a < 3; a++) {
			lo[a] = (int64_t)(tu_uniform(r) * (double)n[a]);
			hi[a] = lo[a] + 1 + (int64_t)(tu_uniform(r) * (double)n[a] * 0.6);
			hi[a] = hi[a] > n[a] ? n[a] : hi[a];
		}
		paint_box(v, (float)(1 + b % 3), lo, hi);
	}
	for (int64_t i = 0; i < ffdp_grid_voxels(&v->grid); i++)
		if (tu_uniform(r) < 0.03)
			v->data[i] = (float)(tu_next(r) % 4);
}

/* ---- Dice ------------------------------------------------------------------- */

static void test_dice_boxes(void)
{
	ffdp_error err = {0};
	ffdp_grid g = ffdp_grid_make(24, 20, 16, 1.0, 1.5, 2.0);
	ffdp_volume a = {0}, b = {0};
	ffdp_volume_alloc(&a, &g, &err);
	ffdp_volume_alloc(&b, &g, &err);
	paint_box(&a, 1, (int64_t[]){2, 3, 1}, (int64_t[]){12, 13, 9});
	paint_box(&b, 1, (int64_t[]){5, 3, 2}, (int64_t[]){15, 11, 10});
	paint_box(&a, 2, (int64_t[]){14, 14, 0}, (int64_t[]){20, 20, 4});
	paint_box(&b, 2, (int64_t[]){14, 14, 0}, (int64_t[]){20, 20, 4});
	paint_box(&a, 7, (int64_t[]){0, 16, 10}, (int64_t[]){2, 20, 14});
	paint_box(&b, 5, (int64_t[]){20, 0, 12}, (int64_t[]){24, 3, 16});
	/* stored labels a little off the integer still round to it */
	a.data[vidx(g.n, 15, 15, 1)] = 2.0004f;
	b.data[vidx(g.n, 16, 15, 1)] = 1.9996f;

	ffdp_label_eval e = {0};
	CHECK_OK(ffdp_eval_labels(&a, &b, 1, &e, &err), &err, "dice boxes: eval_labels runs");
	CHECK(e.nlabels == 4 && e.nboth == 2, "dice boxes: 4 labels in either map, 2 in both (got %d, %d)", e.nlabels,
	      e.nboth);
	int order = e.nlabels == 4 && e.labels[0].label == 1 && e.labels[1].label == 2 && e.labels[2].label == 5 &&
		    e.labels[3].label == 7;
	CHECK(order, "dice boxes: labels listed ascending 1 2 5 7");
	const ffdp_label_stats *l1 = find_label(&e, 1), *l2 = find_label(&e, 2), *l5 = find_label(&e, 5),
			       *l7 = find_label(&e, 7);
	if (!l1 || !l2 || !l5 || !l7) {
		CHECK(0, "dice boxes: every label found");
		ffdp_label_eval_free(&e);
		return;
	}
	/* overlap of [2,12)x[3,13)x[1,9) and [5,15)x[3,11)x[2,10): 7 x 8 x 7 */
	double d1 = 2.0 * 392 / (800 + 640);
	CHECK(l1->n_a == 800 && l1->n_b == 640 && l1->n_ab == 392, "label 1: |A| 800, |B| 640, |A n B| 392 (got %lld %lld %lld)",
	      (long long)l1->n_a, (long long)l1->n_b, (long long)l1->n_ab);
	CHECK(fabs(l1->dice - d1) < 1e-12, "label 1: dice %.6f = 784/1440 = %.6f", l1->dice, d1);
	CHECK(fabs(l1->vol_a_mm3 - 800 * 3.0) < 1e-9 && fabs(l1->vol_b_mm3 - 640 * 3.0) < 1e-9,
	      "label 1: volumes %.1f and %.1f mm3 (voxel 3 mm3)", l1->vol_a_mm3, l1->vol_b_mm3);
	CHECK(l2->dice == 1.0 && l2->hd95_mm == 0.0, "label 2 (same box, near-integer values): dice 1, hd95 0 (got %g, %g)",
	      l2->dice, l2->hd95_mm);
	CHECK(l5->n_a == 0 && l5->dice == 0.0 && isnan(l5->hd95_mm), "label 5 only in b: dice 0, hd95 NaN");
	CHECK(l7->n_b == 0 && l7->dice == 0.0 && isnan(l7->hd95_mm), "label 7 only in a: dice 0, hd95 NaN");
	CHECK(fabs(e.mean_dice - (d1 + 1.0) / 2) < 1e-12, "mean dice %.6f over labels in both maps = %.6f", e.mean_dice,
	      (d1 + 1.0) / 2);
	double h1 = ref_hd95(&a, &b, 1);
	CHECK(fabs(l1->hd95_mm - h1) < 1e-9, "label 1: hd95 %.6f mm = brute force %.6f", l1->hd95_mm, h1);
	CHECK(fabs(e.mean_hd95_mm - h1 / 2) < 1e-9, "mean hd95 %.6f = (%.6f + 0) / 2", e.mean_hd95_mm, h1);
	ffdp_label_eval_free(&e);

	/* refusals */
	b.data[7] = 0.5f;
	ffdp_status s = ffdp_eval_labels(&a, &b, 1, &e, &err);
	CHECK(s == FFDP_ERR_DATA, "a non-integer label value is refused: %s", err.msg);
	ffdp_volume c = {0};
	ffdp_grid g2 = ffdp_grid_make(24, 20, 16, 1.0, 1.5, 2.5);
	ffdp_volume_alloc(&c, &g2, &err);
	s = ffdp_eval_labels(&a, &c, 1, &e, &err);
	CHECK(s == FFDP_ERR_ARG, "label maps on different grids are refused: %s", err.msg);
	ffdp_volume_free(&a), ffdp_volume_free(&b), ffdp_volume_free(&c);
}

/* ---- EDT and HD95 ---------------------------------------------------------------- */

static void test_edt(tu_rng *r, int64_t nx, int64_t ny, int64_t nz, double fill)
{
	ffdp_error err = {0};
	int64_t n[3] = {nx, ny, nz}, nv = nx * ny * nz;
	double sp[3] = {0.6 + tu_uniform(r), 0.6 + tu_uniform(r), 0.6 + 2 * tu_uniform(r)};
	uint8_t *seed = calloc((size_t)nv, 1);
	double *out = malloc(sizeof(double) * nv);
	int64_t ns = 0;
	for (int64_t i = 0; i < nv; i++)
		ns += seed[i] = tu_uniform(r) < fill;
	CHECK_OK(ffdp_edt_sq(seed, n, sp, out, &err), &err, "edt %lldx%lldx%lld: runs", (long long)nx, (long long)ny,
		 (long long)nz);
	double worst = 0;
	int64_t exact = 0;
	for (int64_t z = 0; z < nz; z++)
		for (int64_t y = 0; y < ny; y++)
			for (int64_t x = 0; x < nx; x++) {
				double best = INFINITY;
				for (int64_t k = 0; k < nz; k++)
					for (int64_t j = 0; j < ny; j++)
						for (int64_t i = 0; i < nx; i++)
							if (seed[vidx(n, i, j, k)]) {
								double dx = sp[0] * (double)(x - i), dy = sp[1] * (double)(y - j),
								       dz = sp[2] * (double)(z - k);
								double d = dx * dx + dy * dy + dz * dz;
								best = d < best ? d : best;
							}
				double got = out[vidx(n, x, y, z)];
				if (isinf(best) || isinf(got))
					worst = isinf(best) && isinf(got) ? worst : INFINITY;
				else
					worst = fmax(worst, fabs(got - best));
				exact += got == best;
			}
	CHECK(worst <= 1e-12, "edt %lldx%lldx%lld, spacing %.2f,%.2f,%.2f, %lld seeds: max |d2 - brute force| = %.1e mm2 "
			      "(%lld of %lld bit-identical)",
	      (long long)nx, (long long)ny, (long long)nz, sp[0], sp[1], sp[2], (long long)ns, worst, (long long)exact,
	      (long long)nv);
	free(seed), free(out);
}

static void test_hd95_random(tu_rng *r, int64_t nx, int64_t ny, int64_t nz)
{
	ffdp_error err = {0};
	ffdp_grid g = tu_random_grid(r, nx, ny, nz);
	ffdp_volume a = {0}, b = {0};
	ffdp_volume_alloc(&a, &g, &err);
	ffdp_volume_alloc(&b, &g, &err);
	random_labels(r, &a);
	random_labels(r, &b);
	ffdp_label_eval e = {0};
	CHECK_OK(ffdp_eval_labels(&a, &b, 1, &e, &err), &err, "random %lldx%lldx%lld labels (oblique, spacing %.2f %.2f %.2f): runs",
		 (long long)nx, (long long)ny, (long long)nz, g.spacing[0], g.spacing[1], g.spacing[2]);
	double worst = 0, worst_dice = 0;
	int tested = 0;
	for (int i = 0; i < e.nlabels; i++) {
		const ffdp_label_stats *st = &e.labels[i];
		int64_t na = 0, nb = 0, nab = 0;
		for (int64_t v = 0; v < ffdp_grid_voxels(&g); v++) {
			int la = (int)lround(a.data[v]) == st->label, lb = (int)lround(b.data[v]) == st->label;
			na += la, nb += lb, nab += la && lb;
		}
		worst_dice = fmax(worst_dice, fabs(st->dice - 2.0 * nab / (double)(na + nb)));
		if (!na || !nb)
			continue;
		worst = fmax(worst, fabs(st->hd95_mm - ref_hd95(&a, &b, (int)st->label)));
		tested++;
	}
	CHECK(tested >= 3 && worst <= 1e-9, "random labels: hd95 of %d labels = brute force over oblique physical "
					    "distances (max diff %.1e mm)",
	      tested, worst);
	CHECK(worst_dice <= 1e-12, "random labels: dice = counted reference (max diff %.1e)", worst_dice);
	ffdp_label_eval_free(&e);
	ffdp_volume_free(&a), ffdp_volume_free(&b);
}

static void test_hd95_spheres(void)
{
	ffdp_error err = {0};
	ffdp_grid g = ffdp_grid_make(40, 40, 40, 1, 1, 1);
	ffdp_volume a = {0}, b = {0};
	ffdp_volume_alloc(&a, &g, &err);
	ffdp_volume_alloc(&b, &g, &err);
	for (int64_t z = 0; z < 40; z++)
		for (int64_t y = 0; y < 40; y++)
			for (int64_t x = 0; x < 40; x++) {
				double rr = sqrt((x - 19.3) * (x - 19.3) + (y - 20.1) * (y - 20.1) + (z - 19.7) * (z - 19.7));
				a.data[vidx(g.n, x, y, z)] = rr <= 8.0 ? 1.0f : 0.0f;
				b.data[vidx(g.n, x, y, z)] = rr <= 12.0 ? 1.0f : 0.0f;
			}
	ffdp_label_eval e = {0};
	CHECK_OK(ffdp_eval_labels(&a, &b, 1, &e, &err), &err, "spheres r = 8 and 12 mm: runs");
	double h = e.nlabels == 1 ? e.labels[0].hd95_mm : NAN;
	CHECK(fabs(h - 4.0) <= 1.0, "spheres r = 8 and 12 mm: hd95 %.3f mm = 4 up to a voxel", h);
	ffdp_label_eval_free(&e);
	ffdp_volume_free(&a), ffdp_volume_free(&b);
}

/* ---- Jacobian ------------------------------------------------------------------ */

/* det(L + du/di G) per voxel, central differences in double, one-sided at faces. */
static void ref_jacobian(const ffdp_field *u, const double L[9], double *det)
{
	const int64_t *n = u->grid.n;
	int dim = u->ncomp;
	ffdp_mat4 p2i = ffdp_grid_phys_to_index(&u->grid);
	for (int64_t z = 0; z < n[2]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t x = 0; x < n[0]; x++) {
				int64_t p[3] = {x, y, z};
				double dudi[3][3] = {{0}}; /* [component][index axis] */
				for (int a = 0; a < dim; a++) {
					int64_t q0[3] = {x, y, z}, q1[3] = {x, y, z};
					q0[a] = p[a] > 0 ? p[a] - 1 : p[a];
					q1[a] = p[a] < n[a] - 1 ? p[a] + 1 : p[a];
					double h = (double)(q1[a] - q0[a]);
					for (int c = 0; c < dim; c++)
						dudi[c][a] = h > 0 ? ((double)u->c[c][vidx(n, q1[0], q1[1], q1[2])] -
								      (double)u->c[c][vidx(n, q0[0], q0[1], q0[2])]) / h
								   : 0.0;
				}
				double J[3][3];
				for (int r = 0; r < 3; r++)
					for (int c = 0; c < 3; c++) {
						J[r][c] = L[3 * r + c];
						for (int k = 0; k < 3; k++)
							J[r][c] += dudi[r][k] * p2i.m[4 * k + c];
					}
				if (dim == 2)
					det[vidx(n, x, y, z)] = J[0][0] * J[1][1] - J[0][1] * J[1][0];
				else
					det[vidx(n, x, y, z)] = J[0][0] * (J[1][1] * J[2][2] - J[1][2] * J[2][1]) -
								J[0][1] * (J[1][0] * J[2][2] - J[1][2] * J[2][0]) +
								J[0][2] * (J[1][0] * J[2][1] - J[1][1] * J[2][0]);
			}
}

static void det_stats(const double *d, int64_t n, int64_t *folded, double *lo, double *mean, double *hi)
{
	double s = 0;
	*folded = 0, *lo = INFINITY, *hi = -INFINITY;
	for (int64_t i = 0; i < n; i++) {
		*folded += d[i] <= 0;
		s += d[i];
		*lo = fmin(*lo, d[i]), *hi = fmax(*hi, d[i]);
	}
	*mean = s / (double)n;
}

static double det3(const double m[9])
{
	return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
	       m[2] * (m[3] * m[7] - m[4] * m[6]);
}

static void test_jacobian_affine(ffdp_backend *be, tu_rng *r)
{
	ffdp_error err = {0};
	ffdp_grid g = tu_random_grid(r, 20, 17, 13);
	ffdp_field u = {0};
	ffdp_field_alloc(&u, &g, &err);
	double B[9], c[3], I[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, IB[9];
	for (int k = 0; k < 9; k++)
		B[k] = 0.25 * (tu_uniform(r) - 0.5), IB[k] = I[k] + B[k];
	ffdp_grid_center(&g, c);
	for (int64_t i = 0; i < ffdp_grid_voxels(&g); i++) {
		int64_t x = i % g.n[0], y = (i / g.n[0]) % g.n[1], z = i / (g.n[0] * g.n[1]);
		double idx[3] = {(double)x, (double)y, (double)z}, p[3];
		ffdp_grid_point(&g, idx, p);
		for (int a = 0; a < 3; a++)
			u.c[a][i] = (float)(B[3 * a] * (p[0] - c[0]) + B[3 * a + 1] * (p[1] - c[1]) + B[3 * a + 2] * (p[2] - c[2]));
	}
	ffdp_jacobian_stats st;
	double want = det3(IB);
	CHECK_OK(ffdp_eval_jacobian(be, &u, NULL, &st, &err), &err, "jacobian of an affine u: runs");
	CHECK(st.folded == 0 && fabs(st.det_min - want) < 1e-4 && fabs(st.det_max - want) < 1e-4 &&
		      fabs(st.det_mean - want) < 1e-4,
	      "affine u on an oblique grid: no folds, det min/mean/max %.5f/%.5f/%.5f = det(I + B) = %.5f", st.det_min,
	      st.det_mean, st.det_max, want);

	/* with a linear part: det(L + B) */
	ffdp_mat4 T = ffdp_mat4_identity();
	double LB[9];
	for (int rr = 0; rr < 3; rr++)
		for (int cc = 0; cc < 3; cc++) {
			T.m[4 * rr + cc] = (rr == cc ? 1.1 : 0.0) + 0.2 * (tu_uniform(r) - 0.5);
			LB[3 * rr + cc] = T.m[4 * rr + cc] + B[3 * rr + cc];
		}
	T.m[3] = 5, T.m[7] = -3;
	want = det3(LB);
	CHECK_OK(ffdp_eval_jacobian(be, &u, &T, &st, &err), &err, "jacobian with T: runs");
	CHECK(st.folded == 0 && fabs(st.det_min - want) < 1e-4 && fabs(st.det_max - want) < 1e-4,
	      "T(x) + u(x): det min/max %.5f/%.5f = det(L + B) = %.5f", st.det_min, st.det_max, want);
	ffdp_field_free(&u);
}

/* A fold in x and one in z (crossing a slab boundary): det = (1 + gx')(1 + hz'). */
static void test_jacobian_fold(ffdp_backend *be)
{
	ffdp_error err = {0};
	ffdp_grid g = ffdp_grid_make(64, 64, 150, 1.25, 1.0, 0.8);
	ffdp_field u = {0};
	ffdp_field_alloc(&u, &g, &err);
	const int64_t *n = g.n;
	double *fx = malloc(sizeof(double) * n[0]), *fz = malloc(sizeof(double) * n[2]);
	/* ramps of slope -3 (in index units of displacement per voxel) */
	for (int64_t i = 0; i < n[0]; i++)
		fx[i] = -3.0 * g.spacing[0] * (double)(i < 20 ? 0 : i > 30 ? 10 : i - 20);
	for (int64_t k = 0; k < n[2]; k++)
		fz[k] = -3.0 * g.spacing[2] * (double)(k < 64 ? 0 : k > 74 ? 10 : k - 64);
	for (int64_t z = 0; z < n[2]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t x = 0; x < n[0]; x++) {
				u.c[0][vidx(n, x, y, z)] = (float)fx[x];
				u.c[2][vidx(n, x, y, z)] = (float)fz[z];
			}
	/* analytic factors: 1 + central slope, so columns 20 and 30 give -0.5, 21..29 give -2 */
	int64_t negx = 0, negz = 0;
	for (int64_t i = 0; i < n[0]; i++)
		negx += i >= 20 && i <= 30;
	for (int64_t k = 0; k < n[2]; k++)
		negz += k >= 64 && k <= 74;
	int64_t want = n[1] * (negx * (n[2] - negz) + (n[0] - negx) * negz);
	double *det = malloc(sizeof(double) * ffdp_grid_voxels(&g));
	double L[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
	ref_jacobian(&u, L, det);
	int64_t rf;
	double rlo, rmean, rhi;
	det_stats(det, ffdp_grid_voxels(&g), &rf, &rlo, &rmean, &rhi);
	ffdp_jacobian_stats st, st2;
	CHECK_OK(ffdp_eval_jacobian(be, &u, NULL, &st, &err), &err, "fold 64x64x150 (several slabs): runs");
	/* the map: every voxel's determinant, across the slabs' seams */
	float *map = malloc(sizeof(float) * ffdp_grid_voxels(&g));
	CHECK_OK(ffdp_eval_jacobian_map(be, &u, NULL, map, &st2, &err), &err, "fold: the determinant map");
	double md = 0;
	for (int64_t i = 0; i < ffdp_grid_voxels(&g); i++)
		md = fmax(md, fabs(map[i] - det[i]));
	CHECK(md < 1e-5 && !memcmp(&st, &st2, sizeof(st)), "fold: the map is the reference per voxel (max diff %.1e), "
	      "the same statistics", md);
	free(map);
	CHECK(rf == want && st.folded == want, "fold: %lld folded voxels, reference %lld, analytic %lld", (long long)st.folded,
	      (long long)rf, (long long)want);
	CHECK(fabs(st.folded_fraction - (double)want / (double)ffdp_grid_voxels(&g)) < 1e-15,
	      "fold: folded fraction %.6f", st.folded_fraction);
	CHECK(fabs(st.det_min - rlo) < 1e-5 && fabs(st.det_max - rhi) < 1e-5 && fabs(st.det_mean - rmean) < 1e-6,
	      "fold: det min/mean/max %.4f/%.6f/%.4f = reference %.4f/%.6f/%.4f (slab halos exact)", st.det_min,
	      st.det_mean, st.det_max, rlo, rmean, rhi);
	free(fx), free(fz), free(det);
	ffdp_field_free(&u);
}

/* A large random smooth field on an oblique grid, 3-D and 2-D. */
static void test_jacobian_random(ffdp_backend *be, tu_rng *r, int64_t nz)
{
	ffdp_error err = {0};
	ffdp_grid g = tu_random_grid(r, 48, 40, nz);
	if (nz == 1) { /* a 2-D image keeps its direction in the plane */
		double t = 6.283185307179586 * tu_uniform(r);
		double R[9] = {cos(t), -sin(t), 0, sin(t), cos(t), 0, 0, 0, 1};
		memcpy(g.dir, R, sizeof(R));
	}
	ffdp_field u = {0};
	ffdp_field_alloc(&u, &g, &err);
	for (int c = 0; c < u.ncomp; c++) {
		tu_fill_smooth(r, u.c[c], g.n, 0.0);
		for (int64_t i = 0; i < ffdp_grid_voxels(&g); i++)
			u.c[c][i] *= 12.0f;
	}
	double *det = malloc(sizeof(double) * ffdp_grid_voxels(&g));
	double L[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
	ref_jacobian(&u, L, det);
	int64_t rf, near = 0;
	double rlo, rmean, rhi;
	det_stats(det, ffdp_grid_voxels(&g), &rf, &rlo, &rmean, &rhi);
	for (int64_t i = 0; i < ffdp_grid_voxels(&g); i++)
		near += fabs(det[i]) < 1e-4;
	ffdp_jacobian_stats st;
	CHECK_OK(ffdp_eval_jacobian(be, &u, NULL, &st, &err), &err, "random %s field: runs", nz > 1 ? "3-D" : "2-D");
	CHECK(rf > 0 && llabs(st.folded - rf) <= near, "random %s field: %lld folded = reference %lld (%lld within 1e-4 of 0)",
	      nz > 1 ? "3-D" : "2-D", (long long)st.folded, (long long)rf, (long long)near);
	double tol = 1e-5 * fmax(1.0, fmax(fabs(rlo), fabs(rhi)));
	CHECK(fabs(st.det_min - rlo) < tol && fabs(st.det_max - rhi) < tol && fabs(st.det_mean - rmean) < tol,
	      "random %s field: det min/mean/max %.4f/%.4f/%.4f = reference %.4f/%.4f/%.4f", nz > 1 ? "3-D" : "2-D",
	      st.det_min, st.det_mean, st.det_max, rlo, rmean, rhi);
	free(det);
	ffdp_field_free(&u);
}

/* ---- NCC ------------------------------------------------------------------------- */

static double ref_ncc(const float *a, const float *b, const float *m, int64_t n)
{
	long double sa = 0, sb = 0, cnt = 0;
	for (int64_t i = 0; i < n; i++)
		if (!m || m[i] > 0)
			sa += a[i], sb += b[i], cnt += 1;
	long double ma = sa / cnt, mb = sb / cnt, sab = 0, saa = 0, sbb = 0;
	for (int64_t i = 0; i < n; i++)
		if (!m || m[i] > 0)
			sab += (a[i] - ma) * (b[i] - mb), saa += (a[i] - ma) * (a[i] - ma), sbb += (b[i] - mb) * (b[i] - mb);
	return (double)(sab / sqrtl(saa * sbb));
}

static void test_ncc(ffdp_backend *be, tu_rng *r)
{
	ffdp_error err = {0};
	ffdp_grid g = tu_random_grid(r, 33, 29, 21);
	ffdp_volume a = {0}, b = {0}, c = {0}, m = {0};
	ffdp_volume_alloc(&a, &g, &err), ffdp_volume_alloc(&b, &g, &err);
	ffdp_volume_alloc(&c, &g, &err), ffdp_volume_alloc(&m, &g, &err);
	int64_t n = ffdp_grid_voxels(&g);
	tu_fill_smooth(r, a.data, g.n, 0.05);
	tu_fill_smooth(r, c.data, g.n, 0.05);
	for (int64_t i = 0; i < n; i++)
		b.data[i] = 2.5f * a.data[i] - 3.0f, m.data[i] = (float)(i % 3 == 0);
	double v;
	CHECK_OK(ffdp_eval_ncc(&a, &b, NULL, &v, &err), &err, "ncc: runs");
	CHECK(fabs(v - 1.0) < 1e-6, "ncc(img, 2.5 img - 3) = %.9f = 1", v);
	for (int64_t i = 0; i < n; i++)
		b.data[i] = -0.7f * a.data[i] + 1.0f;
	ffdp_eval_ncc(&a, &b, NULL, &v, &err);
	CHECK(fabs(v + 1.0) < 1e-6, "ncc(img, -0.7 img + 1) = %.9f = -1", v);
	double ref = ref_ncc(a.data, c.data, NULL, n);
	ffdp_eval_ncc(&a, &c, NULL, &v, &err);
	CHECK(fabs(v - ref) < 1e-10 && fabs(v) < 0.999, "ncc of two random images %.6f = long double reference %.6f", v, ref);
	ref = ref_ncc(a.data, c.data, m.data, n);
	ffdp_eval_ncc(&a, &c, &m, &v, &err);
	CHECK(fabs(v - ref) < 1e-10, "masked ncc %.6f = reference over the mask %.6f", v, ref);
	memset(m.data, 0, sizeof(float) * n);
	CHECK(ffdp_eval_ncc(&a, &c, &m, &v, &err) == FFDP_ERR_DATA, "ncc with an empty mask is refused: %s", err.msg);
	for (int64_t i = 0; i < n; i++)
		b.data[i] = 4.0f;
	ffdp_eval_ncc(&a, &b, NULL, &v, &err);
	CHECK(isnan(v), "ncc against a constant image is NaN");

	/* local NCC through the op: squared, so affine maps of either sign give 1 */
	for (int64_t i = 0; i < n; i++)
		b.data[i] = -1.7f * a.data[i] + 0.4f;
	v = NAN;
	CHECK_OK(ffdp_eval_lncc2(be, &a, &b, 9, &v, &err), &err, "lncc2 (k = 9): runs");
	CHECK(fabs(v - 1.0) < 1e-3, "lncc2(img, -1.7 img + 0.4) = %.6f = 1 (squared correlation)", v);
	double w = NAN;
	CHECK_OK(ffdp_eval_lncc2(be, &a, &c, 9, &w, &err), &err, "lncc2 of unrelated images: runs");
	CHECK(w >= 0.0 && w < 0.9, "lncc2 of two unrelated images %.4f is in [0, 0.9)", w);
	ffdp_volume_free(&a), ffdp_volume_free(&b), ffdp_volume_free(&c), ffdp_volume_free(&m);
}

int main(void)
{
	tu_rng r = tu_rng_make(20260301);
	ffdp_error err = {0};
	ffdp_backend *be = NULL;
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "CPU backend opens");

	test_dice_boxes();
	test_edt(&r, 17, 13, 11, 0.04);
	test_edt(&r, 23, 19, 1, 0.02);
	test_edt(&r, 9, 8, 7, 0.0);
	test_edt(&r, 31, 1, 1, 0.1);
	test_hd95_random(&r, 14, 12, 9);
	test_hd95_random(&r, 15, 13, 10);
	test_hd95_random(&r, 30, 26, 1);
	test_hd95_spheres();

	test_ncc(be, &r);
	test_jacobian_affine(be, &r);
	test_jacobian_fold(be);
	test_jacobian_random(be, &r, 24);
	test_jacobian_random(be, &r, 1);

	ffdp_backend_close(be);
	return check_done();
}

/* Evaluation metrics: Dice, HD95 through an exact distance transform,
 * Jacobian statistics, global and local NCC (include/ffdp/eval.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "ffdp/eval.h"
#include "ffdp/grid.h"
#include "ffdp/register.h"

#define LABEL_TOL 1e-3
#define LABEL_MAX_RANGE (1 << 20)       /* distinct label values we can tabulate */
#define COUNT_SCRATCH_BYTES (64 << 20)  /* per-thread label tables, all threads together */
#define JAC_SLAB_VOXELS ((int64_t)1 << 18)
#define JAC_SLAB_MIN_PLANES 8 /* keeps the two halo planes a small overhead */

static int max_threads(void)
{
#ifdef _OPENMP
	return omp_get_max_threads();
#else
	return 1;
#endif
}

static int thread_id(void)
{
#ifdef _OPENMP
	return omp_get_thread_num();
#else
	return 0;
#endif
}

/* ---- label maps ---------------------------------------------------------- */

static inline int64_t label_of(float v)
{
	return (int64_t)floor((double)v + 0.5);
}

/* Range of the rounded labels; refuses NaN and non-integral values. */
static ffdp_status label_range(const ffdp_volume *v, const char *which, int64_t *lo, int64_t *hi, ffdp_error *err)
{
	int64_t n = ffdp_grid_voxels(&v->grid), bad = n, l0 = INT64_MAX, l1 = INT64_MIN;
	const float *x = v->data;
#pragma omp parallel for schedule(static) reduction(min : bad, l0) reduction(max : l1)
	for (int64_t i = 0; i < n; i++) {
		double r = floor((double)x[i] + 0.5);
		if (!(fabs((double)x[i] - r) <= LABEL_TOL) || fabs(r) > 2e9) {
			bad = i < bad ? i : bad;
			continue;
		}
		l0 = (int64_t)r < l0 ? (int64_t)r : l0;
		l1 = (int64_t)r > l1 ? (int64_t)r : l1;
	}
	if (bad < n)
		return ffdp_fail(err, FFDP_ERR_DATA,
				 "labels: the %s map has value %g at voxel %lld, not an integer label "
				 "(an intensity image, or resampled with linear interpolation?)",
				 which, (double)x[bad], (long long)bad);
	*lo = l0, *hi = l1;
	return FFDP_OK;
}

typedef struct label_acc {
	int64_t na, nb, nab;
	int64_t lo[3], hi[3]; /* bounding box over both maps */
} label_acc;

static void acc_init(label_acc *t, int64_t count)
{
	for (int64_t l = 0; l < count; l++) {
		memset(&t[l], 0, sizeof(t[l]));
		for (int a = 0; a < 3; a++)
			t[l].lo[a] = INT64_MAX, t[l].hi[a] = -1;
	}
}

static inline void acc_box(label_acc *t, int64_t x, int64_t y, int64_t z)
{
	int64_t p[3] = {x, y, z};
	for (int a = 0; a < 3; a++) {
		t->lo[a] = p[a] < t->lo[a] ? p[a] : t->lo[a];
		t->hi[a] = p[a] > t->hi[a] ? p[a] : t->hi[a];
	}
}

static void acc_merge(label_acc *dst, const label_acc *src)
{
	dst->na += src->na, dst->nb += src->nb, dst->nab += src->nab;
	for (int a = 0; a < 3; a++) {
		dst->lo[a] = src->lo[a] < dst->lo[a] ? src->lo[a] : dst->lo[a];
		dst->hi[a] = src->hi[a] > dst->hi[a] ? src->hi[a] : dst->hi[a];
	}
}

/* Voxel counts, overlaps and bounding boxes of every label value in lo..lo+range-1.
 * Threads keep private tables (as many threads as COUNT_SCRATCH_BYTES allows). */
static ffdp_status count_labels(const ffdp_volume *a, const ffdp_volume *b, int64_t lo, int64_t range,
				label_acc *tab, ffdp_error *err)
{
	const int64_t *n = a->grid.n;
	int64_t budget = COUNT_SCRATCH_BYTES / (range * (int64_t)sizeof(label_acc));
	int nt = max_threads();
	nt = budget < nt ? (int)(budget > 1 ? budget : 1) : nt;
	label_acc *priv = ffdp_alloc((size_t)nt * (size_t)range * sizeof(label_acc), err);
	if (!priv)
		return err ? err->code : FFDP_ERR_NOMEM;
	acc_init(priv, (int64_t)nt * range);
#pragma omp parallel num_threads(nt)
	{
		label_acc *t = priv + (int64_t)thread_id() * range;
#pragma omp for schedule(static)
		for (int64_t z = 0; z < n[2]; z++)
			for (int64_t y = 0; y < n[1]; y++) {
				int64_t row = (z * n[1] + y) * n[0];
				for (int64_t x = 0; x < n[0]; x++) {
					int64_t la = label_of(a->data[row + x]) - lo;
					int64_t lb = label_of(b->data[row + x]) - lo;
					t[la].na++;
					t[lb].nb++;
					acc_box(&t[la], x, y, z);
					if (la == lb)
						t[la].nab++;
					else
						acc_box(&t[lb], x, y, z);
				}
			}
	}
	acc_init(tab, range);
	for (int k = 0; k < nt; k++)
		for (int64_t l = 0; l < range; l++)
			acc_merge(&tab[l], &priv[(int64_t)k * range + l]);
	ffdp_free(priv);
	return FFDP_OK;
}

/* ---- exact Euclidean distance transform ------------------------------------ */

/* One line: d[q] = min over p with finite f[p] of (s (q - p))^2 + f[p], the
 * lower envelope of parabolas rooted at the finite samples.  v holds the
 * envelope's parabolas, zb the boundaries between them (n + 1 entries). */
static void edt_line(const double *f, double *d, int64_t n, double s, int64_t *v, double *zb)
{
	double s2 = s * s;
	int64_t k = -1;
	for (int64_t q = 0; q < n; q++) {
		if (isinf(f[q]))
			continue;
		double cut = -INFINITY;
		while (k >= 0) {
			int64_t p = v[k];
			cut = ((f[q] + s2 * (double)q * (double)q) - (f[p] + s2 * (double)p * (double)p)) /
			      (2.0 * s2 * (double)(q - p));
			if (cut > zb[k])
				break;
			k--;
			cut = -INFINITY;
		}
		k++;
		v[k] = q;
		zb[k] = cut;
		zb[k + 1] = INFINITY;
	}
	if (k < 0) {
		for (int64_t q = 0; q < n; q++)
			d[q] = INFINITY;
		return;
	}
	k = 0;
	for (int64_t q = 0; q < n; q++) {
		while (zb[k + 1] < (double)q)
			k++;
		/* (s dq)^2 rather than s^2 dq^2: the same rounding as a direct sum of squared mm */
		double t = s * (double)(q - v[k]);
		d[q] = t * t + f[v[k]];
	}
}

/* One separable pass along axis ax; the first pass reads the seeds. */
static void edt_pass(const uint8_t *seed, double *out, const int64_t n[3], int ax, double s, char *scratch,
		     size_t per_thread)
{
	int64_t len = n[ax], nx = n[0], plane = n[0] * n[1];
	int64_t stride = ax == 0 ? 1 : ax == 1 ? nx : plane;
	int64_t lines = n[0] * n[1] * n[2] / len;
#pragma omp parallel
	{
		char *mine = scratch + (size_t)thread_id() * per_thread;
		double *f = (double *)mine, *d = f + len, *zb = d + len;
		int64_t *v = (int64_t *)(zb + len + 1);
#pragma omp for schedule(static)
		for (int64_t l = 0; l < lines; l++) {
			int64_t base = ax == 0 ? l * nx : ax == 1 ? (l / nx) * plane + l % nx : l;
			for (int64_t q = 0; q < len; q++) {
				int64_t i = base + q * stride;
				f[q] = seed ? (seed[i] ? 0.0 : INFINITY) : out[i];
			}
			edt_line(f, d, len, s, v, zb);
			for (int64_t q = 0; q < len; q++)
				out[base + q * stride] = d[q];
		}
	}
}

ffdp_status ffdp_edt_sq(const uint8_t *seed, const int64_t n[3], const double spacing[3], double *out,
			ffdp_error *err)
{
	int64_t len = 1;
	for (int a = 0; a < 3; a++) {
		if (n[a] < 1 || !(spacing[a] > 0))
			return ffdp_fail(err, FFDP_ERR_ARG, "edt: bad size or spacing on axis %d", a);
		len = n[a] > len ? n[a] : len;
	}
	/* f, d, zb (len + 1) doubles and v int64s per thread, rounded to a cache line */
	size_t per_thread = ((size_t)(4 * len + 1) * 8 + 63) / 64 * 64;
	char *scratch = ffdp_alloc(per_thread * (size_t)max_threads(), err);
	if (!scratch)
		return err ? err->code : FFDP_ERR_NOMEM;
	edt_pass(seed, out, n, 0, spacing[0], scratch, per_thread);
	for (int ax = 1; ax < 3; ax++)
		if (n[ax] > 1)
			edt_pass(NULL, out, n, ax, spacing[ax], scratch, per_thread);
	ffdp_free(scratch);
	return FFDP_OK;
}

/* ---- HD95 ------------------------------------------------------------------- */

/* A box of the image: the union bounding box of one label in both maps. */
typedef struct box {
	int64_t lo[3], n[3];
} box;

/* Boundary voxels of `label` in v, within the box: voxels of the label with
 * a face neighbour of another label.  The box holds every voxel of the
 * label, so neighbours outside it (in the image or not) are other labels. */
static int64_t mark_boundary(const ffdp_volume *v, int64_t label, const box *bx, int dim, uint8_t *mark)
{
	const int64_t *gn = v->grid.n;
	const int64_t *bn = bx->n;
	int64_t count = 0;
	float lo = (float)((double)label - 0.5), hi = (float)((double)label + 0.5);
#define IS_LABEL(val) ((val) > lo && (val) < hi)
#pragma omp parallel for schedule(static) reduction(+ : count)
	for (int64_t z = 0; z < bn[2]; z++)
		for (int64_t y = 0; y < bn[1]; y++)
			for (int64_t x = 0; x < bn[0]; x++) {
				int64_t p[3] = {x, y, z};
				int64_t g = ((bx->lo[2] + z) * gn[1] + bx->lo[1] + y) * gn[0] + bx->lo[0] + x;
				int64_t gstride[3] = {1, gn[0], gn[0] * gn[1]};
				uint8_t edge = 0;
				if (IS_LABEL(v->data[g])) {
					for (int a = 0; a < dim && !edge; a++)
						edge = p[a] == 0 || p[a] == bn[a] - 1 || !IS_LABEL(v->data[g - gstride[a]]) ||
						       !IS_LABEL(v->data[g + gstride[a]]);
				}
				mark[(z * bn[1] + y) * bn[0] + x] = edge;
				count += edge;
			}
#undef IS_LABEL
	return count;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Linear-interpolated percentile q (0..1) of d (sorted here). */
static double percentile(double *d, int64_t n, double q)
{
	qsort(d, (size_t)n, sizeof(double), cmp_double);
	double r = q * (double)(n - 1);
	int64_t k = (int64_t)floor(r);
	if (k >= n - 1)
		return d[n - 1];
	return d[k] + (r - (double)k) * (d[k + 1] - d[k]);
}

/* Append sqrt(dist) at the marked voxels. */
static int64_t gather(const uint8_t *mark, const double *dist, int64_t n, double *d)
{
	int64_t k = 0;
	for (int64_t i = 0; i < n; i++)
		if (mark[i])
			d[k++] = sqrt(dist[i]);
	return k;
}

static ffdp_status hd95_label(const ffdp_volume *a, const ffdp_volume *b, const label_acc *t, int64_t label,
			      double *hd, ffdp_error *err)
{
	box bx;
	int64_t nv = 1;
	for (int ax = 0; ax < 3; ax++) {
		bx.lo[ax] = t->lo[ax];
		bx.n[ax] = t->hi[ax] - t->lo[ax] + 1;
		nv *= bx.n[ax];
	}
	int dim = ffdp_grid_dim(&a->grid);
	uint8_t *ma = ffdp_alloc((size_t)nv * 2, err);
	double *dist = ma ? ffdp_alloc((size_t)nv * sizeof(double), err) : NULL;
	if (!dist) {
		ffdp_free(ma);
		return err ? err->code : FFDP_ERR_NOMEM;
	}
	uint8_t *mb = ma + nv;
	int64_t na = mark_boundary(a, label, &bx, dim, ma);
	int64_t nb = mark_boundary(b, label, &bx, dim, mb);
	double *d = ffdp_alloc((size_t)(na + nb) * sizeof(double), err);
	ffdp_status s = d ? FFDP_OK : (err ? err->code : FFDP_ERR_NOMEM);
	if (!s)
		s = ffdp_edt_sq(mb, bx.n, a->grid.spacing, dist, err);
	int64_t k = 0;
	if (!s) {
		k = gather(ma, dist, nv, d);
		s = ffdp_edt_sq(ma, bx.n, a->grid.spacing, dist, err);
	}
	if (!s) {
		k += gather(mb, dist, nv, d + k);
		*hd = percentile(d, k, 0.95);
	}
	ffdp_free(d);
	ffdp_free(dist);
	ffdp_free(ma);
	return s;
}

/* ---- Dice and the label table ------------------------------------------------ */

static void fill_stats(const ffdp_grid *g, const label_acc *t, int64_t label, ffdp_label_stats *st)
{
	double vox = g->spacing[0] * g->spacing[1] * g->spacing[2];
	st->label = label;
	st->n_a = t->na, st->n_b = t->nb, st->n_ab = t->nab;
	st->vol_a_mm3 = (double)t->na * vox;
	st->vol_b_mm3 = (double)t->nb * vox;
	st->dice = 2.0 * (double)t->nab / (double)(t->na + t->nb);
	st->hd95_mm = NAN;
}

static ffdp_status check_same_grid(const ffdp_volume *a, const ffdp_volume *b, const char *what, ffdp_error *err)
{
	if (!a->data || !b->data)
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: empty image", what);
	if (!ffdp_grid_same(&a->grid, &b->grid, 1e-4))
		return ffdp_fail(err, FFDP_ERR_ARG,
				 "%s: the images are on different grids (%lldx%lldx%lld at %.4g,%.4g,%.4g mm vs "
				 "%lldx%lldx%lld at %.4g,%.4g,%.4g mm, or different origin/direction); "
				 "resample one onto the other first",
				 what, (long long)a->grid.n[0], (long long)a->grid.n[1], (long long)a->grid.n[2],
				 a->grid.spacing[0], a->grid.spacing[1], a->grid.spacing[2], (long long)b->grid.n[0],
				 (long long)b->grid.n[1], (long long)b->grid.n[2], b->grid.spacing[0],
				 b->grid.spacing[1], b->grid.spacing[2]);
	return FFDP_OK;
}

void ffdp_label_eval_free(ffdp_label_eval *e)
{
	if (!e)
		return;
	ffdp_free(e->labels);
	memset(e, 0, sizeof(*e));
}

static void label_means(ffdp_label_eval *e)
{
	double sd = 0, sh = 0;
	int nb = 0;
	for (int i = 0; i < e->nlabels; i++) {
		const ffdp_label_stats *st = &e->labels[i];
		if (st->n_a > 0 && st->n_b > 0)
			nb++, sd += st->dice, sh += st->hd95_mm;
	}
	e->nboth = nb;
	e->mean_dice = nb ? sd / nb : NAN;
	e->mean_hd95_mm = nb ? sh / nb : NAN;
}

ffdp_status ffdp_eval_labels(const ffdp_volume *a, const ffdp_volume *b, int want_hd95, ffdp_label_eval *out,
			     ffdp_error *err)
{
	memset(out, 0, sizeof(*out));
	int64_t lo_a = 0, hi_a = 0, lo_b = 0, hi_b = 0;
	ffdp_status s = check_same_grid(a, b, "labels", err);
	if (s || (s = label_range(a, "first", &lo_a, &hi_a, err)) || (s = label_range(b, "second", &lo_b, &hi_b, err)))
		return s;
	/* include 0 in the table so that background needs no special case */
	int64_t lo = lo_a < lo_b ? lo_a : lo_b, hi = hi_a > hi_b ? hi_a : hi_b;
	lo = lo < 0 ? lo : 0, hi = hi > 0 ? hi : 0;
	int64_t range = hi - lo + 1;
	if (range > LABEL_MAX_RANGE)
		return ffdp_fail(err, FFDP_ERR_DATA, "labels: values span %lld..%lld, more than %d distinct values",
				 (long long)lo, (long long)hi, LABEL_MAX_RANGE);
	label_acc *tab = ffdp_alloc((size_t)range * sizeof(label_acc), err);
	if (!tab)
		return err ? err->code : FFDP_ERR_NOMEM;
	s = count_labels(a, b, lo, range, tab, err);
	int64_t count = 0;
	for (int64_t l = 0; !s && l < range; l++)
		count += l + lo != 0 && (tab[l].na || tab[l].nb);
	if (!s && count && !(out->labels = ffdp_alloc((size_t)count * sizeof(ffdp_label_stats), err)))
		s = err ? err->code : FFDP_ERR_NOMEM;
	for (int64_t l = 0; !s && l < range; l++) {
		if (l + lo == 0 || !(tab[l].na || tab[l].nb))
			continue;
		ffdp_label_stats *st = &out->labels[out->nlabels++];
		fill_stats(&a->grid, &tab[l], l + lo, st);
		if (want_hd95 && st->n_a && st->n_b)
			s = hd95_label(a, b, &tab[l], l + lo, &st->hd95_mm, err);
	}
	ffdp_free(tab);
	if (s) {
		ffdp_label_eval_free(out);
		return s;
	}
	label_means(out);
	return FFDP_OK;
}

/* ---- Jacobian determinant ------------------------------------------------------ */

static void jac_reduce(const float *det, int64_t n, ffdp_jacobian_stats *st, double *sum)
{
	int64_t folded = 0;
	double lo = st->det_min, hi = st->det_max, s = 0;
#pragma omp parallel for schedule(static) reduction(+ : folded, s) reduction(min : lo) reduction(max : hi)
	for (int64_t i = 0; i < n; i++) {
		double v = det[i];
		folded += v <= 0.0;
		s += v;
		lo = v < lo ? v : lo;
		hi = v > hi ? v : hi;
	}
	st->folded += folded;
	st->det_min = lo, st->det_max = hi;
	*sum += s;
}

ffdp_status ffdp_eval_jacobian(ffdp_backend *be, const ffdp_field *u, const ffdp_mat4 *T,
			       ffdp_jacobian_stats *out, ffdp_error *err)
{
	return ffdp_eval_jacobian_map(be, u, T, NULL, out, err);
}

ffdp_status ffdp_eval_jacobian_map(ffdp_backend *be, const ffdp_field *u, const ffdp_mat4 *T, float *map,
				   ffdp_jacobian_stats *out, ffdp_error *err)
{
	memset(out, 0, sizeof(*out));
	const int64_t *n = u->grid.n;
	int64_t plane = n[0] * n[1];
	if (!u->c[0] || u->ncomp != ffdp_grid_dim(&u->grid))
		return ffdp_fail(err, FFDP_ERR_ARG, "jacobian: the field has %d components on a %d-D grid", u->ncomp,
				 ffdp_grid_dim(&u->grid));
	double A[9], G[9];
	ffdp_mat4 L = T ? *T : ffdp_mat4_identity(), p2i = ffdp_grid_phys_to_index(&u->grid);
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			A[3 * r + c] = L.m[4 * r + c], G[3 * r + c] = p2i.m[4 * r + c];
	/* slabs of S planes plus one halo plane each side, so central differences
	 * inside a slab see the same neighbours as on the whole grid */
	int64_t S = JAC_SLAB_VOXELS / plane;
	S = S < JAC_SLAB_MIN_PLANES ? JAC_SLAB_MIN_PLANES : S;
	S = S > n[2] ? n[2] : S;
	float *det = ffdp_alloc((size_t)(S + 2) * (size_t)plane * sizeof(float), err);
	if (!det)
		return err ? err->code : FFDP_ERR_NOMEM;
	out->det_min = INFINITY, out->det_max = -INFINITY;
	double sum = 0;
	ffdp_status s = FFDP_OK;
	for (int64_t z0 = 0; z0 < n[2] && !s; z0 += S) {
		int64_t z1 = z0 + S < n[2] ? z0 + S : n[2];
		int64_t h0 = z0 > 0, h1 = z1 < n[2], depth = z1 - z0 + h0 + h1;
		ffdp_vec uv = {{NULL, NULL, NULL}, {n[0], n[1], depth}, u->ncomp};
		for (int c = 0; c < u->ncomp; c++)
			uv.c[c] = u->c[c] + (z0 - h0) * plane;
		ffdp_img o = {det, {n[0], n[1], depth}};
		s = ffdp_op_jacobian_det(be, &uv, A, G, o, err);
		if (!s)
			jac_reduce(det + h0 * plane, (z1 - z0) * plane, out, &sum);
		if (!s && map)
			memcpy(map + z0 * plane, det + h0 * plane, (size_t)((z1 - z0) * plane) * sizeof(float));
	}
	ffdp_free(det);
	if (s)
		return s;
	out->voxels = ffdp_grid_voxels(&u->grid);
	out->folded_fraction = (double)out->folded / (double)out->voxels;
	out->det_mean = sum / (double)out->voxels;
	return FFDP_OK;
}

/* ---- similarity -------------------------------------------------------------- */

ffdp_status ffdp_eval_ncc(const ffdp_volume *a, const ffdp_volume *b, const ffdp_volume *mask, double *ncc,
			  ffdp_error *err)
{
	ffdp_status s = check_same_grid(a, b, "ncc", err);
	if (!s && mask)
		s = check_same_grid(a, mask, "ncc mask", err);
	if (s)
		return s;
	int64_t n = ffdp_grid_voxels(&a->grid), cnt = 0;
	const float *x = a->data, *y = b->data, *m = mask ? mask->data : NULL;
	double sx = 0, sy = 0;
#pragma omp parallel for schedule(static) reduction(+ : sx, sy, cnt)
	for (int64_t i = 0; i < n; i++)
		if (!m || m[i] > 0)
			sx += x[i], sy += y[i], cnt++;
	if (!cnt)
		return ffdp_fail(err, FFDP_ERR_DATA, "ncc: the mask is empty");
	double mx = sx / (double)cnt, my = sy / (double)cnt, sxy = 0, sxx = 0, syy = 0;
#pragma omp parallel for schedule(static) reduction(+ : sxy, sxx, syy)
	for (int64_t i = 0; i < n; i++)
		if (!m || m[i] > 0) {
			double dx = x[i] - mx, dy = y[i] - my;
			sxy += dx * dy, sxx += dx * dx, syy += dy * dy;
		}
	*ncc = sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
	return FFDP_OK;
}

ffdp_status ffdp_eval_lncc2(ffdp_backend *be, const ffdp_volume *a, const ffdp_volume *b, int k, double *lncc2,
			    ffdp_error *err)
{
	ffdp_status s = check_same_grid(a, b, "lncc", err);
	if (s)
		return s;
	double loss = 0;
	ffdp_loss_args la;
	memset(&la, 0, sizeof(la));
	la.f = (ffdp_img){a->data, {a->grid.n[0], a->grid.n[1], a->grid.n[2]}};
	la.m = (ffdp_img){b->data, {b->grid.n[0], b->grid.n[1], b->grid.n[2]}};
	la.scale = 1.0;
	la.loss = &loss;
	ffdp_lncc_opts o = {.k = k, .exact_grad = 0, .eps = 0.0};
	s = ffdp_op_lncc(be, &la, &o, err);
	if (!s)
		*lncc2 = -loss;
	return s;
}

ffdp_status ffdp_eval_endpoint_error(const ffdp_mat4 *T, const ffdp_field *u, const ffdp_field *truth,
				     const ffdp_volume *mask, double *mean_voxels, ffdp_error *err)
{
	const ffdp_grid *g = &truth->grid;
	if ((u && !ffdp_grid_same(&u->grid, g, 1e-6)) || (mask && !ffdp_grid_same(&mask->grid, g, 1e-6)))
		return ffdp_fail(err, FFDP_ERR_ARG, "endpoint error: fields and mask must share the truth's grid");
	ffdp_mat4 i2p = ffdp_grid_index_to_phys(g);
	const int64_t nx = g->n[0], ny = g->n[1], nz = g->n[2];
	double sum = 0;
	int64_t cnt = 0;
#pragma omp parallel for collapse(2) reduction(+ : sum, cnt) schedule(static)
	for (int64_t z = 0; z < nz; z++)
		for (int64_t y = 0; y < ny; y++)
			for (int64_t x = 0; x < nx; x++) {
				int64_t i = (z * ny + y) * nx + x;
				if (mask && !(mask->data[i] > 0))
					continue;
				double idx[3] = {(double)x, (double)y, (double)z}, p[3], q[3], e2 = 0;
				ffdp_mat4_apply_point(&i2p, idx, p);
				ffdp_mat4_apply_point(T, p, q);
				for (int c = 0; c < truth->ncomp; c++) {
					double d = q[c] + (u ? u->c[c][i] : 0.0f) - p[c] - truth->c[c][i];
					e2 += d * d;
				}
				sum += sqrt(e2), cnt++;
			}
	if (!cnt)
		return ffdp_fail(err, FFDP_ERR_ARG, "endpoint error: the mask is empty");
	*mean_voxels = sum / (double)cnt / g->spacing[0];
	return FFDP_OK;
}

/* Mean over the mask of |d + a o (Id + d)| in voxels: how far
 * (Id + a) o (Id + d) is from the identity. */
static ffdp_status compose_residual(ffdp_backend *be, const ffdp_field *a, const ffdp_field *d, ffdp_field *tmp,
				   const ffdp_volume *mask, double *mean_voxels, ffdp_error *err)
{
	const ffdp_grid *g = &d->grid;
	const int64_t *n = g->n;
	ffdp_mat4 p2i = ffdp_grid_phys_to_index(g);
	ffdp_compose_args ca;
	memset(&ca, 0, sizeof(ca));
	ca.u = (ffdp_vec){{a->c[0], a->c[1], a->c[2]}, {n[0], n[1], n[2]}, d->ncomp};
	ca.d = (ffdp_vec){{d->c[0], d->c[1], d->c[2]}, {n[0], n[1], n[2]}, d->ncomp};
	ca.out = (ffdp_vec){{tmp->c[0], tmp->c[1], tmp->c[2]}, {n[0], n[1], n[2]}, d->ncomp};
	ca.pad = FFDP_PAD_BORDER;
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			ca.C[3 * r + c] = p2i.m[4 * r + c];
	ffdp_status s = ffdp_op_compose(be, &ca, err);
	if (s)
		return s;
	double sum = 0;
	int64_t cnt = 0;
	for (int64_t i = 0; i < ffdp_grid_voxels(g); i++) {
		if (mask && !(mask->data[i] > 0))
			continue;
		double e2 = 0;
		for (int c = 0; c < d->ncomp; c++)
			e2 += (double)tmp->c[c][i] * tmp->c[c][i];
		sum += sqrt(e2), cnt++;
	}
	if (!cnt)
		return ffdp_fail(err, FFDP_ERR_ARG, "inverse consistency: the mask is empty");
	*mean_voxels = sum / (double)cnt / g->spacing[0];
	return FFDP_OK;
}

ffdp_status ffdp_eval_inverse_consistency(ffdp_backend *be, const ffdp_field *u, const ffdp_mat4 *T,
					  const ffdp_field *u_inv, const ffdp_volume *mask, double *fwd_inv,
					  double *inv_fwd, ffdp_error *err)
{
	const ffdp_grid *g = &u->grid;
	if (!ffdp_grid_same(&u_inv->grid, g, 1e-6) || (mask && !ffdp_grid_same(&mask->grid, g, 1e-6)))
		return ffdp_fail(err, FFDP_ERR_ARG, "inverse consistency: the fields and the mask must share a grid");
	ffdp_field w = {0}, tmp = {0};
	ffdp_status s = ffdp_warp_to_ants(u, T, &w, err);
	if (!s)
		s = ffdp_field_alloc(&tmp, g, err);
	if (!s)
		s = compose_residual(be, &w, u_inv, &tmp, mask, fwd_inv, err);
	if (!s)
		s = compose_residual(be, u_inv, &w, &tmp, mask, inv_fwd, err);
	ffdp_field_free(&tmp);
	ffdp_field_free(&w);
	return s;
}

/* Phantom: labels present, determinism, the truth field really inverts the
 * deformation (labels, intensities), its size and invertibility, resolution
 * independence, 2-D, refused options, and generation by slabs of any
 * thickness equal to the whole (what ffdp synth writes). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_count.h"
#include "check.h"
#include "ffdp/ffdp.h"
#include "synth/synth.h"

typedef struct set {
	ffdp_volume f, m, fl, ml;
	ffdp_field u;
} set;

static ffdp_status make(set *s, const ffdp_phantom_opts *o, ffdp_error *err)
{
	memset(s, 0, sizeof(*s));
	return ffdp_phantom_make(o, &s->f, &s->m, &s->fl, &s->ml, &s->u, err);
}

static void drop(set *s)
{
	ffdp_volume_free(&s->f);
	ffdp_volume_free(&s->m);
	ffdp_volume_free(&s->fl);
	ffdp_volume_free(&s->ml);
	ffdp_field_free(&s->u);
}

static int64_t count_differing(const float *a, const float *b, int64_t n)
{
	int64_t k = 0;
	for (int64_t i = 0; i < n; i++)
		k += a[i] != b[i];
	return k;
}

static void label_counts(const ffdp_volume *v, int64_t cnt[FFDP_PH_NLABELS])
{
	memset(cnt, 0, FFDP_PH_NLABELS * sizeof(int64_t));
	int64_t n = ffdp_grid_voxels(&v->grid);
	for (int64_t i = 0; i < n; i++) {
		int l = (int)v->data[i];
		if (l >= 0 && l < FFDP_PH_NLABELS)
			cnt[l]++;
	}
}

/* Nearest-neighbour label at physical p (0 outside the grid). */
static int nn_label(const ffdp_volume *v, const ffdp_mat4 *p2i, const double p[3])
{
	double c[3];
	int64_t i[3];
	ffdp_mat4_apply_point(p2i, p, c);
	for (int a = 0; a < 3; a++) {
		i[a] = (int64_t)floor(c[a] + 0.5);
		if (i[a] < 0 || i[a] >= v->grid.n[a])
			return 0;
	}
	return (int)v->data[(i[2] * v->grid.n[1] + i[1]) * v->grid.n[0] + i[0]];
}

/* Trilinear value at physical p, clamped to the grid (bilinear when nz == 1). */
static double trilinear(const ffdp_volume *v, const ffdp_mat4 *p2i, const double p[3])
{
	double c[3], f[3];
	int64_t i0[3], i1[3];
	ffdp_mat4_apply_point(p2i, p, c);
	for (int a = 0; a < 3; a++) {
		double hi = (double)(v->grid.n[a] - 1);
		c[a] = c[a] < 0 ? 0 : c[a] > hi ? hi : c[a];
		i0[a] = (int64_t)floor(c[a]);
		i1[a] = i0[a] + 1 < v->grid.n[a] ? i0[a] + 1 : i0[a];
		f[a] = c[a] - (double)i0[a];
	}
	double s = 0;
	for (int k = 0; k < 8; k++) {
		int64_t x = k & 1 ? i1[0] : i0[0], y = k & 2 ? i1[1] : i0[1], z = k & 4 ? i1[2] : i0[2];
		double w = (k & 1 ? f[0] : 1 - f[0]) * (k & 2 ? f[1] : 1 - f[1]) * (k & 4 ? f[2] : 1 - f[2]);
		s += w * v->data[(z * v->grid.n[1] + y) * v->grid.n[0] + x];
	}
	return s;
}

typedef struct truth_stats {
	double dice[FFDP_PH_NLABELS], dice_id[FFDP_PH_NLABELS];
	double mad, mad_id;   /* mean |moving(x+u) - fixed|, and |moving(x) - fixed|, inside the head */
	double umax;
	double jmin, jmax;
	int64_t jneg;
} truth_stats;

static double dice(int64_t inter, int64_t a, int64_t b)
{
	return a + b ? 2.0 * (double)inter / (double)(a + b) : 1.0;
}

static void truth_check(const set *s, truth_stats *t)
{
	const ffdp_grid *g = &s->f.grid;
	ffdp_mat4 i2p = ffdp_grid_index_to_phys(g), p2i = ffdp_grid_phys_to_index(g);
	int64_t nx = g->n[0], ny = g->n[1], nz = g->n[2];
	int64_t inter[FFDP_PH_NLABELS] = {0}, na[FFDP_PH_NLABELS] = {0}, nb[FFDP_PH_NLABELS] = {0};
	int64_t inter0[FFDP_PH_NLABELS] = {0}, nb0[FFDP_PH_NLABELS] = {0}, nin = 0;
	double mad = 0, mad0 = 0, umax = 0;
	for (int64_t z = 0; z < nz; z++)
		for (int64_t y = 0; y < ny; y++)
			for (int64_t x = 0; x < nx; x++) {
				int64_t i = (z * ny + y) * nx + x;
				double idx[3] = {(double)x, (double)y, (double)z}, p[3], q[3], uu = 0;
				ffdp_mat4_apply_point(&i2p, idx, p);
				for (int a = 0; a < 3; a++) {
					double ua = a < s->u.ncomp ? s->u.c[a][i] : 0.0;
					q[a] = p[a] + ua;
					uu += ua * ua;
				}
				umax = fmax(umax, sqrt(uu));
				int lf = (int)s->fl.data[i], lw = nn_label(&s->ml, &p2i, q), l0 = (int)s->ml.data[i];
				na[lf]++, nb[lw]++, nb0[l0]++;
				inter[lf] += lf == lw;
				inter0[lf] += lf == l0;
				if (lf != FFDP_PH_BACKGROUND && uu > 1.0) {
					mad += fabs(trilinear(&s->m, &p2i, q) - s->f.data[i]);
					mad0 += fabs((double)s->m.data[i] - s->f.data[i]);
					nin++;
				}
			}
	for (int l = 0; l < FFDP_PH_NLABELS; l++) {
		t->dice[l] = dice(inter[l], na[l], nb[l]);
		t->dice_id[l] = dice(inter0[l], na[l], nb0[l]);
	}
	t->mad = mad / (double)nin, t->mad_id = mad0 / (double)nin, t->umax = umax;

	/* det(I + grad u) by central differences over the interior. */
	int dim = s->u.ncomp;
	t->jmin = 1e30, t->jmax = -1e30, t->jneg = 0;
	int64_t z0 = dim == 3 ? 1 : 0, z1 = dim == 3 ? nz - 1 : 1;
	for (int64_t z = z0; z < z1; z++)
		for (int64_t y = 1; y < ny - 1; y++)
			for (int64_t x = 1; x < nx - 1; x++) {
				int64_t i = (z * ny + y) * nx + x, step[3] = {1, nx, nx * ny};
				double J[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
				for (int a = 0; a < dim; a++)
					for (int b = 0; b < dim; b++)
						J[3 * a + b] += (s->u.c[a][i + step[b]] - s->u.c[a][i - step[b]]) /
								(2.0 * g->spacing[b]);
				double det = J[0] * (J[4] * J[8] - J[5] * J[7]) - J[1] * (J[3] * J[8] - J[5] * J[6]) +
					     J[2] * (J[3] * J[7] - J[4] * J[6]);
				t->jmin = fmin(t->jmin, det), t->jmax = fmax(t->jmax, det);
				t->jneg += det <= 0;
			}
}

static const char *lname[FFDP_PH_NLABELS] = {"background", "CSF", "GM", "WM", "ventricle L", "ventricle R",
					     "nucleus L", "nucleus R"};

static void report_truth(const char *what, const truth_stats *t, double amplitude, double noise)
{
	double dmin = 1, dimin = 1;
	for (int l = 0; l < FFDP_PH_NLABELS; l++) {
		CHECK(t->dice[l] >= 0.95, "%s: Dice(fixed labels, moving labels at x+u) for %s = %.4f >= 0.95 "
		      "(identity: %.4f)", what, lname[l], t->dice[l], t->dice_id[l]);
		dmin = fmin(dmin, t->dice[l]), dimin = fmin(dimin, t->dice_id[l]);
	}
	CHECK(dimin < dmin - 0.05, "%s: the truth matters: worst Dice without it %.3f, with it %.3f", what, dimin,
	      dmin);
	/* Two independent noise fields, the moving one trilinearly averaged (std 0.35..1 sigma):
	 * E|diff| <= sqrt(2/pi) sqrt(2) sigma = 1.13 sigma, plus the interpolation error at
	 * edges sharp on the voxel scale, bounded by the noise-free check (0.012). */
	double bound = 1.13 * noise + 0.012;
	CHECK(t->mad < bound, "%s: mean |moving(x+u) - fixed| where |u| > 1 mm in the head = %.4f < %.4f "
	      "(identity: %.4f)", what, t->mad, bound, t->mad_id);
	CHECK(fabs(t->umax - amplitude) <= 0.25 * amplitude, "%s: max |u| = %.3f mm, amplitude %.3g mm (25 %%)",
	      what, t->umax, amplitude);
	CHECK(t->jneg == 0 && t->jmin > 0.5, "%s: det(I + grad u) in [%.3f, %.3f], %lld non-positive", what,
	      t->jmin, t->jmax, (long long)t->jneg);
}

/* Label volumes (mm^3) of the default phantom and of the same field of view at 3 mm. */
static void check_resolution(const ffdp_phantom_opts *o, ffdp_error *err)
{
	ffdp_phantom_opts oc = *o;
	for (int a = 0; a < 3; a++)
		oc.n[a] = o->n[a] / 2, oc.spacing[a] = 2 * o->spacing[a];
	ffdp_volume fine[2], coarse[2];
	memset(fine, 0, sizeof(fine));
	memset(coarse, 0, sizeof(coarse));
	CHECK_OK(ffdp_phantom_make(o, NULL, NULL, &fine[0], &fine[1], NULL, err), err, "labels at 1.5 mm");
	CHECK_OK(ffdp_phantom_make(&oc, NULL, NULL, &coarse[0], &coarse[1], NULL, err), err, "labels at 3 mm");
	for (int k = 0; k < 2 && fine[k].data && coarse[k].data; k++) {
		int64_t cf[FFDP_PH_NLABELS], cc[FFDP_PH_NLABELS];
		label_counts(&fine[k], cf);
		label_counts(&coarse[k], cc);
		double vf = o->spacing[0] * o->spacing[1] * o->spacing[2], vc = 8 * vf, worst = 0;
		int wl = 0;
		for (int l = 1; l < FFDP_PH_NLABELS; l++) {
			double r = fabs((double)cc[l] * vc / ((double)cf[l] * vf) - 1.0);
			if (r > worst)
				worst = r, wl = l;
		}
		CHECK(worst < 0.10, "%s label volumes at 3 mm vs 1.5 mm: worst %s %.0f vs %.0f mm^3 (%.1f %%)",
		      k ? "moving" : "fixed", lname[wl], (double)cc[wl] * vc, (double)cf[wl] * vf, 100 * worst);
	}
	for (int k = 0; k < 2; k++) {
		ffdp_volume_free(&fine[k]);
		ffdp_volume_free(&coarse[k]);
	}
}

/* nz = 1: an axial slice through the centre with an in-plane deformation.
 * The default field of view at 1 mm: the slice cuts where the bumps are
 * strongest, so every boundary moves by a sub-voxel amount and the
 * nearest-neighbour floor of Dice, 1 - h / (4 thickness), is reached. */
static void check_2d(const ffdp_phantom_opts *o, ffdp_error *err)
{
	ffdp_phantom_opts o2 = *o;
	o2.n[0] = 144, o2.n[1] = 168, o2.n[2] = 1;
	o2.spacing[0] = o2.spacing[1] = o2.spacing[2] = 1.0;
	set s;
	CHECK_OK(make(&s, &o2, err), err, "2-D phantom 144x168x1 at 1 mm");
	if (err->code)
		return;
	CHECK(s.u.ncomp == 2 && s.u.c[2] == NULL && s.f.grid.origin[2] == 0.0,
	      "2-D: truth has 2 components, slice at z = 0");
	int64_t cf[FFDP_PH_NLABELS], cm[FFDP_PH_NLABELS], missing = 0;
	label_counts(&s.fl, cf);
	label_counts(&s.ml, cm);
	for (int l = 0; l < FFDP_PH_NLABELS; l++)
		missing += cf[l] < 50 || cm[l] < 50;
	CHECK(missing == 0, "2-D: all %d labels in both slices (smallest: %lld voxels)", FFDP_PH_NLABELS,
	      (long long)(cf[4] < cf[6] ? cf[4] : cf[6]));
	truth_stats ts;
	truth_check(&s, &ts);
	report_truth("2-D", &ts, o2.amplitude_mm, o2.noise);
	drop(&s);
}

static void refused(ffdp_phantom_opts o, const char *word, const char *what, ffdp_error *err)
{
	ffdp_volume f = {0};
	ffdp_error_clear(err);
	ffdp_status st = ffdp_phantom_make(&o, &f, NULL, NULL, NULL, NULL, err);
	CHECK(st == FFDP_ERR_ARG && strstr(err->msg, word) && f.data == NULL, "refused %s: \"%s\"", what,
	      err->msg);
	ffdp_volume_free(&f);
}

static void check_refused(ffdp_error *err)
{
	ffdp_phantom_opts d = ffdp_phantom_defaults(), o;
	o = d, o.n[0] = 7;
	refused(o, "size", "nx = 7", err);
	o = d, o.n[1] = 0;
	refused(o, "size", "ny = 0", err);
	o = d, o.n[2] = 0;
	refused(o, "size", "nz = 0", err);
	o = d, o.spacing[1] = 0;
	refused(o, "spacing", "spacing 0", err);
	o = d, o.spacing[2] = NAN;
	refused(o, "spacing", "spacing NaN", err);
	o = d, o.amplitude_mm = -1;
	refused(o, "amplitude", "amplitude -1", err);
	o = d, o.amplitude_mm = INFINITY;
	refused(o, "amplitude", "amplitude inf", err);
	o = d, o.noise = -0.1;
	refused(o, "noise", "noise -0.1", err);
	o = d, o.n[0] = o.n[1] = 16, o.n[2] = 16, o.amplitude_mm = 10;
	refused(o, "amplitude", "a 10 mm deformation of a 24 mm field of view", err);
	ffdp_error_clear(err);
	CHECK(ffdp_phantom_make(NULL, NULL, NULL, NULL, NULL, NULL, err) == FFDP_ERR_ARG, "refused NULL options: %s",
	      err->msg);
}

/* The deformation module itself: scaled to the amplitude, gentle, and
 * inverted to 1e-6 mm, for a large, a small and a tiny field of view. */
static void check_deform(void)
{
	static const double cases[3][4] = {{72, 84, 72, 4}, {24, 28, 24, 12}, {4, 4, 4, 2}};
	for (int c = 0; c < 3; c++) {
		const double *half = cases[c];
		double brain[3] = {0.9 * half[0], 0.9 * half[1], 0.9 * half[2]}, worst = 0, dmax, gmax;
		ph_deform d;
		ffdp_error err = {0};
		CHECK_OK(ph_deform_make(&d, half, brain, 3, cases[c][3], 3, &err), &err, "bumps for +-%g mm, %g mm",
			 half[0], cases[c][3]);
		if (err.code)
			continue;
		ph_deform_bounds(&d, half, 3, &dmax, &gmax);
		int64_t bad = 0;
		for (int k = 0; k < 21 * 21 * 21; k++) {
			double p[3] = {half[0] * (k % 21 - 10) / 10.0, half[1] * (k / 21 % 21 - 10) / 10.0,
				       half[2] * (k / 441 - 10) / 10.0}, dx[3], jx[9], q[3], dq[3];
			ph_deform_eval(&d, p, dx, jx);
			bad += ph_deform_invert(&d, p, dx, jx, q) != 0;
			ph_deform_eval(&d, q, dq, NULL);
			for (int a = 0; a < 3; a++)
				worst = fmax(worst, fabs(q[a] + dq[a] - p[a]));
		}
		CHECK(fabs(dmax - cases[c][3]) < 1e-9 && gmax <= PH_MAX_GRAD + 1e-12 && bad == 0 && worst < 1e-6,
		      "deformation +-%g mm, %g mm: max |d| %.4f, max |grad d| %.3f, |psi(psi^-1(x)) - x| <= %.2g mm",
		      half[0], cases[c][3], dmax, gmax, worst);
	}
}

/* Planes [z0, z0 + k) at a time, for slabs of k = 1, 3 and nz planes, equal
 * the whole phantom bit for bit: every output, 3-D and 2-D. */
static void check_slabs(const ffdp_phantom_opts *o, ffdp_error *err)
{
	set w;
	ffdp_phantom *p = NULL;
	CHECK_OK(make(&w, o, err), err, "whole phantom %lldx%lldx%lld", (long long)o->n[0], (long long)o->n[1],
		 (long long)o->n[2]);
	CHECK_OK(ffdp_phantom_create(o, &p, err), err, "phantom generator");
	if (!p || !w.f.data)
		return;
	const ffdp_grid *g = ffdp_phantom_grid(p);
	int64_t plane = g->n[0] * g->n[1], nz = g->n[2], dim = ffdp_grid_dim(g);
	CHECK(ffdp_grid_same(g, &w.f.grid, 0), "generator grid = whole phantom's");
	float *buf = malloc((size_t)(7 * nz * plane) * sizeof(float));
	const int64_t ks[3] = {1, 3, nz};
	for (int t = 0; t < 3; t++) {
		int64_t dif = 0;
		ffdp_status st = FFDP_OK;
		for (int64_t z = 0; z < nz && st == FFDP_OK; z += ks[t]) {
			int64_t n = z + ks[t] > nz ? nz - z : ks[t], m = n * plane;
			ffdp_phantom_planes pl = {buf, buf + m, buf + 2 * m, buf + 3 * m,
						  {buf + 4 * m, buf + 5 * m, dim == 3 ? buf + 6 * m : NULL}};
			st = ffdp_phantom_generate(p, z, z + n, &pl, err);
			const float *want[7] = {w.f.data, w.m.data, w.fl.data, w.ml.data, w.u.c[0], w.u.c[1], w.u.c[2]};
			for (int k = 0; k < 6 + (dim == 3); k++)
				dif += count_differing(buf + k * m, want[k] + z * plane, m);
		}
		CHECK(st == FFDP_OK && dif == 0, "%lld-D, slabs of %lld planes: every output equals the whole (%lld differ)",
		      (long long)dim, (long long)ks[t], (long long)dif);
	}
	ffdp_phantom_planes none = {NULL, NULL, NULL, NULL, {NULL, NULL, NULL}};
	CHECK(ffdp_phantom_generate(p, 2, nz + 1, &none, err) == FFDP_ERR_ARG && strstr(err->msg, "planes [2,"),
	      "planes past nz refused: %s", err->msg);
	free(buf);
	ffdp_phantom_free(p);
	drop(&w);
}

int main(void)
{
	ffdp_error err = {0};
	ffdp_phantom_opts o = ffdp_phantom_defaults();
	CHECK(o.n[0] == 96 && o.n[1] == 112 && o.n[2] == 96 && o.spacing[0] == 1.5 && o.amplitude_mm == 4.0 &&
		      o.noise == 0.02 && o.seed == 1,
	      "defaults: 96x112x96 at 1.5 mm, 4 mm, 2 %% noise, seed 1");

	/* defaults: every label in both images, and fast */
	set a, b;
	alloc_count_reset();
	double t0 = ffdp_now();
	CHECK_OK(make(&a, &o, &err), &err, "default phantom with every output");
	if (err.code)
		return check_done();
	double dt = ffdp_now() - t0;
	size_t outb = 7 * (size_t)ffdp_grid_voxels(&a.f.grid) * sizeof(float);
	CHECK(alloc_count_peak_extra() <= outb + 4096 + 7 * FFDP_ALLOC_PAD,
	      "phantom allocates its outputs only: peak %zu bytes for %zu",
	      alloc_count_peak_extra(), outb);
	printf("     default phantom (all five outputs) in %.3f s on %d threads\n", dt, ffdp_num_threads());
	CHECK(dt < 5.0, "default phantom in %.3f s (< 5 s even on a loaded machine)", dt);
	int64_t cf[FFDP_PH_NLABELS], cm[FFDP_PH_NLABELS];
	label_counts(&a.fl, cf);
	label_counts(&a.ml, cm);
	for (int l = 0; l < FFDP_PH_NLABELS; l++)
		CHECK(cf[l] > 1000 && cm[l] > 1000, "label %d (%s): %lld voxels fixed, %lld moving", l, lname[l],
		      (long long)cf[l], (long long)cm[l]);
	CHECK(a.u.ncomp == 3 && a.u.c[2], "3-D truth has three components");
	CHECK(ffdp_grid_same(&a.f.grid, &a.m.grid, 0) && ffdp_grid_same(&a.f.grid, &a.u.grid, 0),
	      "fixed, moving and truth share the grid");
	double c[3];
	ffdp_grid_center(&a.f.grid, c);
	CHECK(fabs(c[0]) + fabs(c[1]) + fabs(c[2]) < 1e-9, "grid centre at physical 0 (%g %g %g)", c[0], c[1], c[2]);
	float lo, hi;
	ffdp_volume_range(&a.f, &lo, &hi);
	CHECK(hi > 0.95 && hi < 1.4 && lo < 0, "fixed intensities in [%.3f, %.3f]: WM ~1 with bias and noise", lo,
	      hi);

	/* determinism */
	int64_t n = ffdp_grid_voxels(&a.f.grid);
	CHECK_OK(make(&b, &o, &err), &err, "same options again");
	int64_t dif = count_differing(a.f.data, b.f.data, n) + count_differing(a.m.data, b.m.data, n) +
		      count_differing(a.fl.data, b.fl.data, n) + count_differing(a.ml.data, b.ml.data, n);
	for (int k = 0; k < 3; k++)
		dif += count_differing(a.u.c[k], b.u.c[k], n);
	CHECK(dif == 0, "same seed: identical outputs (%lld values differ)", (long long)dif);
	drop(&b);
	ffdp_phantom_opts o2 = o;
	o2.seed = 2;
	CHECK_OK(make(&b, &o2, &err), &err, "seed 2");
	int64_t dm = count_differing(a.m.data, b.m.data, n), dml = count_differing(a.ml.data, b.ml.data, n);
	CHECK(dm > n / 2 && dml > 1000, "different seed: moving differs at %lld voxels, its labels at %lld",
	      (long long)dm, (long long)dml);
	CHECK(count_differing(a.fl.data, b.fl.data, n) == 0, "different seed: same object (fixed labels equal)");
	drop(&b);

	/* The truth at the default size, with noise and without. */
	truth_stats ts;
	truth_check(&a, &ts);
	report_truth("3-D", &ts, o.amplitude_mm, o.noise);
	drop(&a);
	/* Noise-free, the truth leaves only trilinear interpolation error at edges. */
	ffdp_phantom_opts oq = o;
	oq.noise = 0;
	CHECK_OK(make(&a, &oq, &err), &err, "noise-free phantom");
	if (!err.code) {
		truth_check(&a, &ts);
		CHECK(ts.mad < 0.012 && ts.mad < ts.mad_id / 3,
		      "noise-free: mean |moving(x+u) - fixed| where |u| > 1 mm in the head = %.4f < 0.012 and "
		      "< a third of %.4f (identity)", ts.mad, ts.mad_id);
		drop(&a);
	}

	/* Resolution independence: the same object at 3 mm. */
	check_resolution(&o, &err);

	/* A large deformation on a small grid stays invertible (the bumps widen). */
	ffdp_phantom_opts ob = o;
	ob.n[0] = 48, ob.n[1] = 56, ob.n[2] = 48, ob.spacing[0] = ob.spacing[1] = ob.spacing[2] = 3.0;
	ob.amplitude_mm = 12.0, ob.seed = 7;
	CHECK_OK(make(&a, &ob, &err), &err, "3 mm phantom with a 12 mm deformation");
	if (!err.code) {
		truth_check(&a, &ts);
		CHECK(fabs(ts.umax - 12.0) <= 3.0 && ts.jneg == 0 && ts.jmin > 0.3,
		      "12 mm deformation: max |u| = %.2f mm, det(I + grad u) in [%.3f, %.3f]", ts.umax, ts.jmin,
		      ts.jmax);
		drop(&a);
	}

	/* No deformation: moving is fixed up to noise, truth is zero. */
	ob.amplitude_mm = 0.0;
	CHECK_OK(make(&a, &ob, &err), &err, "amplitude 0");
	if (!err.code) {
		int64_t nb3 = ffdp_grid_voxels(&a.f.grid), nonzero = 0;
		for (int k = 0; k < 3; k++)
			for (int64_t i = 0; i < nb3; i++)
				nonzero += a.u.c[k][i] != 0.0f;
		CHECK(nonzero == 0 && count_differing(a.fl.data, a.ml.data, nb3) == 0,
		      "amplitude 0: truth zero (%lld nonzero), moving labels equal fixed labels", (long long)nonzero);
		drop(&a);
	}

	check_deform();
	ffdp_phantom_opts os = o;
	os.n[0] = 37, os.n[1] = 41, os.n[2] = 23, os.spacing[2] = 2.5, os.amplitude_mm = 6.0;
	check_slabs(&os, &err);
	os.n[2] = 1;
	check_slabs(&os, &err);
	check_2d(&o, &err);
	check_refused(&err);
	return check_done();
}

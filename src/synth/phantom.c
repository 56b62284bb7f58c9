/* The synthetic brain phantom: an analytic object in LPS mm, centred at the
 * origin, sampled at voxel centres of any grid.
 *
 * Geometry, in "nominal" mm (q = p / s, s <= 1 shrinks the object to fit the
 * field of view with a 10 % margin), with e = q / R the ellipsoidal
 * coordinate and r = |e|:
 *   r >= 1                    background
 *   0.90 <= r < 1             CSF rim (5..8 mm: thick enough to survive
 *                             nearest-neighbour resampling at 1.5 mm)
 *   r_wm(n) <= r < 0.90       cortical grey matter, n = e / r; its inner
 *                             boundary r_wm = 0.74 + 0.07 g(n) is folded by
 *                             a smooth angular pattern g in [-1, 1] (gyri)
 *   inside r_wm               white matter, holding two lateral ventricles
 *                             and two deep nuclei (ellipsoids).
 * Labels are point samples of these regions.  Intensities are the same
 * regions blurred by a 0.5 mm Gaussian (an erfc across each boundary, using
 * the first-order signed distance), times a mild bias field attached to the
 * object, plus Gaussian noise keyed by (seed, image, voxel).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ffdp/phantom.h"
#include "synth.h"

/* Brain semi-axes (L-R, A-P, S-I), nominal mm. */
static const double ph_R[3] = {70.0, 85.0, 60.0};
#define PH_R_GM 0.90   /* CSF / GM boundary, ellipsoidal radius */
#define PH_R_WM 0.74   /* mean GM / WM boundary */
#define PH_FOLD 0.07   /* fold depth, same unit */
#define PH_BLUR 0.5    /* intensity edge blur, mm */

/* Ventricles (anterior) and nuclei (posterior): label, centre and semi-axes
 * (nominal mm, LPS: +x is left, +y posterior).  Larger than anatomy so that
 * they survive 3 mm and coarser pyramid levels; disjoint, inside the WM. */
static const struct ph_blob {
	int label;
	double c[3], a[3];
	double value;
} ph_blobs[4] = {
	{FFDP_PH_VENTRICLE_L, {13.0, -16.0, 6.0}, {11.0, 26.0, 15.0}, 0.2},
	{FFDP_PH_VENTRICLE_R, {-13.0, -16.0, 6.0}, {11.0, 26.0, 15.0}, 0.2},
	{FFDP_PH_NUCLEUS_L, {20.0, 27.0, -2.0}, {15.0, 16.0, 14.0}, 0.8},
	{FFDP_PH_NUCLEUS_R, {-20.0, 27.0, -2.0}, {15.0, 16.0, 14.0}, 0.8},
};
#define PH_I_WM 1.0
#define PH_I_GM 0.65
#define PH_I_CSF 0.25

ffdp_phantom_opts ffdp_phantom_defaults(void)
{
	ffdp_phantom_opts o = {{96, 112, 96}, {1.5, 1.5, 1.5}, 4.0, 0.02, 1};
	return o;
}

/* Fold pattern: smooth in the direction n (no pole singularity), in [-1, 1]. */
static double ph_fold(const double n[3])
{
	double a = sin(14.0 * n[0] + 1.3) * cos(13.0 * n[1] - 0.4);
	double b = cos(12.0 * n[2] + 5.0 * n[0]) * sin(14.0 * n[1] + 2.1);
	return 0.5 * (a + b);
}

/* Soft inside-indicator of a region at signed distance sd (mm, < 0 inside). */
static double ph_inside(double sd)
{
	if (sd > 5.0 * PH_BLUR)
		return 0.0;
	if (sd < -5.0 * PH_BLUR)
		return 1.0;
	return 0.5 * erfc(sd / (sqrt(2.0) * PH_BLUR));
}

/* Signed distance (first order) to the level r = r0 of r = |(q - c) / a|,
 * with q = p / s: (r - r0) / |grad_p r|. */
static double ph_sd(const double qc[3], const double a[3], double r, double r0, double s)
{
	double g = 0.0;
	for (int i = 0; i < 3; i++) {
		double t = qc[i] / (a[i] * a[i]);
		g += t * t;
	}
	g = r > 1e-9 ? sqrt(g) / (r * s) : 1.0 / (85.0 * s);
	return (r - r0) / g;
}

static double ph_bias(const double e[3])
{
	return 1.0 + 0.05 * e[0] - 0.04 * e[1] + 0.04 * e[2] + 0.03 * (e[0] * e[0] - e[2] * e[2]);
}

/* Tissue texture: real T1 images are never flat inside a tissue (vessels,
 * myelin, partial volume), and a registration can only recover motion where
 * the image varies.  A fixed sum of plane waves in object coordinates
 * (wavelengths 8..24.5 mm, directions on a spherical Fibonacci lattice)
 * gives +-PH_TEXTURE of smooth variation that moves with the object. */
#define PH_TEXTURE 0.08
#define PH_NWAVES 12

static double ph_texture(const double q[3])
{
	double t = 0.0;
	for (int j = 0; j < PH_NWAVES; j++) {
		double z = 1.0 - (2.0 * j + 1.0) / PH_NWAVES, rho = sqrt(1.0 - z * z);
		double phi = 2.399963229728653 * j; /* golden angle */
		double k = 6.283185307179586 / (8.0 + 1.5 * j);
		double arg = k * (rho * cos(phi) * q[0] + rho * sin(phi) * q[1] + z * q[2]) + 1.7 * j;
		t += cos(arg);
	}
	return t / sqrt(0.5 * PH_NWAVES); /* unit variance */
}

/* Label and noise-free intensity of the object at physical point p. */
static int ph_eval(double s, const double p[3], double *value)
{
	double q[3], e[3], r = 0.0;
	for (int i = 0; i < 3; i++) {
		q[i] = p[i] / s;
		e[i] = q[i] / ph_R[i];
		r += e[i] * e[i];
	}
	r = sqrt(r);
	double sd_head = ph_sd(q, ph_R, r, 1.0, s);
	if (sd_head > 5.0 * PH_BLUR) {
		*value = 0.0;
		return FFDP_PH_BACKGROUND;
	}
	double n[3] = {0.0, 0.0, 1.0};
	if (r > 1e-9)
		for (int i = 0; i < 3; i++)
			n[i] = e[i] / r;
	double rwm = PH_R_WM + PH_FOLD * ph_fold(n);
	double sd_gm = ph_sd(q, ph_R, r, PH_R_GM, s), sd_wm = ph_sd(q, ph_R, r, rwm, s);

	int label = FFDP_PH_WM;
	double deep = PH_I_WM - PH_I_GM;
	for (int b = 0; b < 4; b++) {
		const struct ph_blob *bl = &ph_blobs[b];
		double qc[3], rb = 0.0;
		for (int i = 0; i < 3; i++) {
			qc[i] = q[i] - bl->c[i];
			rb += (qc[i] / bl->a[i]) * (qc[i] / bl->a[i]);
		}
		rb = sqrt(rb);
		double sd = ph_sd(qc, bl->a, rb, 1.0, s);
		deep += ph_inside(sd) * (bl->value - PH_I_WM);
		if (sd < 0.0)
			label = bl->label;
	}
	double v = ph_inside(sd_head) *
		   (PH_I_CSF + ph_inside(sd_gm) * ((PH_I_GM - PH_I_CSF) + ph_inside(sd_wm) * deep));
	*value = v * ph_bias(e) * (1.0 + PH_TEXTURE * ph_texture(q));

	if (sd_head >= 0.0)
		return FFDP_PH_BACKGROUND;
	if (sd_gm >= 0.0)
		return FFDP_PH_CSF;
	if (sd_wm >= 0.0)
		return FFDP_PH_GM;
	return label;
}

/* Standard normal keyed by (key, voxel): Box-Muller on two hashed uniforms. */
static double ph_normal(uint64_t key, int64_t i)
{
	uint64_t k = key + 2u * (uint64_t)i;
	double u1 = ph_unit(k), u2 = ph_unit(k + 1u);
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static ffdp_status ph_check(const ffdp_phantom_opts *o, ffdp_error *err)
{
	if (!o)
		return ffdp_fail(err, FFDP_ERR_ARG, "phantom options are NULL");
	if (o->n[0] < 8 || o->n[1] < 8 || o->n[2] < 1)
		return ffdp_fail(err, FFDP_ERR_ARG, "phantom size %lldx%lldx%lld: need nx, ny >= 8 and nz >= 1",
				 (long long)o->n[0], (long long)o->n[1], (long long)o->n[2]);
	for (int a = 0; a < 3; a++)
		if (!(o->spacing[a] > 0.0) || !isfinite(o->spacing[a]))
			return ffdp_fail(err, FFDP_ERR_ARG, "phantom spacing %g along axis %d is not a positive number",
					 o->spacing[a], a);
	if (!(o->amplitude_mm >= 0.0) || !isfinite(o->amplitude_mm))
		return ffdp_fail(err, FFDP_ERR_ARG, "phantom amplitude_mm %g is not a non-negative number",
				 o->amplitude_mm);
	if (!(o->noise >= 0.0) || !isfinite(o->noise))
		return ffdp_fail(err, FFDP_ERR_ARG, "phantom noise %g is not a non-negative number", o->noise);
	return FFDP_OK;
}

struct ffdp_phantom {
	ffdp_phantom_opts o;
	ffdp_grid g;
	double s;          /* object scale: fits the field of view */
	ph_deform d;
	uint64_t key_f, key_m; /* noise of the fixed and moving images */
};

/* One voxel at physical x: noise keyed by its flat index i in the whole
 * volume, outputs stored at j.  Returns nonzero if the inverse failed. */
static int ph_voxel(const ffdp_phantom *p, const double x[3], int64_t i, int64_t j, const ffdp_phantom_planes *out)
{
	const ffdp_phantom_opts *o = &p->o;
	double v;
	int lab;
	if (out->fixed || out->fixed_labels) {
		lab = ph_eval(p->s, x, &v);
		if (out->fixed)
			out->fixed[j] = (float)(v + o->noise * PH_I_WM * ph_normal(p->key_f, i));
		if (out->fixed_labels)
			out->fixed_labels[j] = (float)lab;
	}
	double dv[3], jx[9];
	if (out->moving || out->moving_labels || out->u[0])
		ph_deform_eval(&p->d, x, dv, out->u[0] ? jx : NULL);
	if (out->moving || out->moving_labels) {
		double y[3];
		for (int a = 0; a < 3; a++)
			y[a] = x[a] + dv[a];
		lab = ph_eval(p->s, y, &v);
		if (out->moving)
			out->moving[j] = (float)(v + o->noise * PH_I_WM * ph_normal(p->key_m, i));
		if (out->moving_labels)
			out->moving_labels[j] = (float)lab;
	}
	if (out->u[0]) {
		double y[3];
		int bad = ph_deform_invert(&p->d, x, dv, jx, y);
		for (int a = 0; a < 3; a++)
			if (out->u[a])
				out->u[a][j] = (float)(y[a] - x[a]);
		return bad;
	}
	return 0;
}

ffdp_status ffdp_phantom_create(const ffdp_phantom_opts *o, ffdp_phantom **out, ffdp_error *err)
{
	*out = NULL;
	ffdp_status st = ph_check(o, err);
	if (st)
		return st;
	ffdp_phantom *p = calloc(1, sizeof(*p));
	if (!p)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "phantom: out of memory");
	p->o = *o;
	/* Identity direction, grid centre at physical 0 (a 2-D slice lies at z = 0). */
	ffdp_grid g = ffdp_grid_make(o->n[0], o->n[1], o->n[2], o->spacing[0], o->spacing[1], o->spacing[2]);
	int dim = ffdp_grid_dim(&g);
	double half[3] = {0, 0, 0}, brain[3], s = 1.0;
	for (int a = 0; a < 3; a++) {
		g.origin[a] = -0.5 * (double)(g.n[a] - 1) * g.spacing[a];
		if (a < dim) {
			half[a] = 0.5 * (double)g.n[a] * g.spacing[a];
			s = fmin(s, 0.9 * half[a] / ph_R[a]);
		}
	}
	double smallest = 1e300;
	for (int a = 0; a < 3; a++) {
		brain[a] = s * ph_R[a];
		if (a < dim)
			smallest = fmin(smallest, brain[a]);
	}
	p->g = g, p->s = s;
	p->key_f = ph_hash(o->seed * 4u + 1u), p->key_m = ph_hash(o->seed * 4u + 2u);
	/* Larger shifts would carry the head out of the field of view. */
	if (o->amplitude_mm > 0.5 * smallest)
		st = ffdp_fail(err, FFDP_ERR_ARG,
			       "phantom amplitude_mm %g exceeds half the smallest brain semi-axis (%.3g mm) "
			       "that fits this field of view", o->amplitude_mm, smallest);
	if (st == FFDP_OK)
		st = ph_deform_make(&p->d, half, brain, dim, o->amplitude_mm, o->seed, err);
	if (st) {
		free(p);
		return st;
	}
	*out = p;
	return FFDP_OK;
}

const ffdp_grid *ffdp_phantom_grid(const ffdp_phantom *p)
{
	return &p->g;
}

void ffdp_phantom_free(ffdp_phantom *p)
{
	free(p);
}

ffdp_status ffdp_phantom_generate(const ffdp_phantom *p, int64_t z0, int64_t z1, const ffdp_phantom_planes *out,
				  ffdp_error *err)
{
	const ffdp_grid *g = &p->g;
	if (z0 < 0 || z1 < z0 || z1 > g->n[2])
		return ffdp_fail(err, FFDP_ERR_ARG, "phantom: planes [%lld, %lld) of %lld", (long long)z0,
				 (long long)z1, (long long)g->n[2]);
	ffdp_mat4 i2p = ffdp_grid_index_to_phys(g);
	int64_t nx = g->n[0], ny = g->n[1], row0 = z0 * ny, rows = (z1 - z0) * ny;
	int64_t bad = 0;
	/* Rows rather than planes, so a 2-D slice is threaded too; background rows are cheap, hence dynamic. */
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : bad)
	for (int64_t r = 0; r < rows; r++) {
		int64_t row = row0 + r;
		for (int64_t xi = 0; xi < nx; xi++) {
			double idx[3] = {(double)xi, (double)(row % ny), (double)(row / ny)}, x[3];
			ffdp_mat4_apply_point(&i2p, idx, x);
			bad += ph_voxel(p, x, row * nx + xi, r * nx + xi, out) != 0;
		}
	}
	if (bad)
		return ffdp_fail(err, FFDP_ERR_DATA, "phantom: inverting the deformation failed at %lld voxels",
				 (long long)bad);
	return FFDP_OK;
}

static void ph_free_all(ffdp_volume *vols[4], ffdp_field *truth)
{
	for (int k = 0; k < 4; k++)
		if (vols[k])
			ffdp_volume_free(vols[k]);
	if (truth)
		ffdp_field_free(truth);
}

ffdp_status ffdp_phantom_make(const ffdp_phantom_opts *o, ffdp_volume *fixed, ffdp_volume *moving,
			      ffdp_volume *fixed_labels, ffdp_volume *moving_labels, ffdp_field *truth,
			      ffdp_error *err)
{
	ffdp_phantom *p = NULL;
	ffdp_volume *vols[4] = {fixed, moving, fixed_labels, moving_labels};
	for (int k = 0; k < 4; k++)
		if (vols[k])
			memset(vols[k], 0, sizeof(*vols[k]));
	if (truth)
		memset(truth, 0, sizeof(*truth));
	ffdp_status st = ffdp_phantom_create(o, &p, err);
	if (st)
		return st;
	const ffdp_grid *g = ffdp_phantom_grid(p);
	for (int k = 0; k < 4 && !st; k++)
		if (vols[k])
			st = ffdp_volume_alloc(vols[k], g, err);
	if (!st && truth)
		st = ffdp_field_alloc(truth, g, err);
	ffdp_phantom_planes out = {fixed ? fixed->data : NULL, moving ? moving->data : NULL,
				   fixed_labels ? fixed_labels->data : NULL,
				   moving_labels ? moving_labels->data : NULL,
				   {truth ? truth->c[0] : NULL, truth ? truth->c[1] : NULL, truth ? truth->c[2] : NULL}};
	if (!st)
		st = ffdp_phantom_generate(p, 0, g->n[2], &out, err);
	ffdp_phantom_free(p);
	if (st)
		ph_free_all(vols, truth);
	return st;
}

/* Registration end to end on the phantom with its known deformation:
 * greedy and SyN recover the displacement (endpoint error inside the
 * object), labels overlap, warps do not fold, SyN's inverse is consistent,
 * an affine stage undoes a known affine, and 2-D works. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"


static void check_deformable(const char *name, int64_t n0, int64_t n1, int64_t n2, double sp, double amp,
			     double sigma_grad, double sigma_warp, int compact)
{
	/* compact 1: bf16 moments; 2: and unorm16 images */
	char preset[64];
	snprintf(preset, sizeof(preset), "%s%s", name,
		 compact == 2 ? " (bf16 moments, u16 images)" : compact ? " (bf16 moments)" : "");
	ffdp_error err = {0};
	ffdp_phantom_opts po = ffdp_phantom_defaults();
	po.n[0] = n0, po.n[1] = n1, po.n[2] = n2;
	po.spacing[0] = po.spacing[1] = po.spacing[2] = sp;
	po.amplitude_mm = amp;
	ffdp_volume F = {0}, M = {0}, FL = {0}, ML = {0}, W = {0};
	ffdp_field truth = {0};
	CHECK_OK(ffdp_phantom_make(&po, &F, &M, &FL, &ML, &truth, &err), &err, "%s: phantom %lldx%lldx%lld", preset,
		 (long long)n0, (long long)n1, (long long)n2);
	ffdp_reg_opts o;
	ffdp_reg_preset(name, &o, &err);
	o.moments = compact ? FFDP_MOMENTS_BF16 : FFDP_MOMENTS_F32;
	o.images16 = compact == 2;
	o.stages[o.nstages - 1].sigma_grad = sigma_grad;
	o.stages[o.nstages - 1].sigma_warp = sigma_warp;
	ffdp_reg_result r;
	double t0 = ffdp_now();
	CHECK_OK(ffdp_register(&F, &M, &o, &r, &err), &err, "%s: registration runs (%.1f s)", preset, ffdp_now() - t0);
	if (err.code)
		return;
	double epe = 1e9, epe0 = 0;
	ffdp_mat4 id = ffdp_mat4_identity();
	CHECK_OK(ffdp_eval_endpoint_error(&r.T, &r.u, &truth, &FL, &epe, &err) ||
		 ffdp_eval_endpoint_error(&id, NULL, &truth, &FL, &epe0, &err), &err, "%s: endpoint errors", preset);
	CHECK(epe < 0.5 && epe < 0.6 * epe0, "%s: mean endpoint error inside the phantom %.3f voxel < 0.5 (%.3f before)",
	      preset, epe, epe0);
	ffdp_backend *be = NULL;
	ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err);
	double d0 = tu_mean_dice(&FL, &ML);
	CHECK_OK(ffdp_warp_volume(be, &ML, &F.grid, &r.T, &r.u, FFDP_INTERP_LABEL, &W, &err), &err,
		 "%s: warp the moving labels", preset);
	double d1 = tu_mean_dice(&FL, &W);
	CHECK(d1 >= 0.9 && d1 > d0, "%s: label Dice %.3f >= 0.9 (before %.3f)", preset, d1, d0);
	ffdp_jacobian_stats js;
	CHECK_OK(ffdp_eval_jacobian(be, &r.u, &r.T, &js, &err), &err, "%s: Jacobian", preset);
	CHECK(js.folded == 0, "%s: no folded voxels (det min %.3f)", preset, js.det_min);
	if (r.has_inverse) {
		double fi = NAN, ic = NAN;
		CHECK_OK(ffdp_eval_inverse_consistency(be, &r.u, &r.T, &r.u_inv, &FL, &fi, &ic, &err), &err,
			 "%s: compose inverse with forward", preset);
		CHECK(fi < 0.1, "%s: forward o inverse within %.4f voxel (mean) of the identity, < 0.1", preset, fi);
		CHECK(ic < 0.1, "%s: inverse o forward within %.4f voxel (mean) of the identity, < 0.1", preset, ic);
	}
	ffdp_backend_close(be);
	ffdp_reg_result_free(&r);
	ffdp_volume_free(&F), ffdp_volume_free(&M), ffdp_volume_free(&FL), ffdp_volume_free(&ML);
	ffdp_volume_free(&W);
	ffdp_field_free(&truth);
}

/* Mean distance (mm) between T and T0 over the object's voxels (every 7th). */
static double affine_error(const ffdp_volume *F, const ffdp_volume *FL, const ffdp_mat4 *T, const ffdp_mat4 *T0)
{
	ffdp_mat4 i2p = ffdp_grid_index_to_phys(&F->grid);
	double sum = 0;
	int64_t cnt = 0;
	for (int64_t i = 0; i < ffdp_grid_voxels(&F->grid); i += 7) {
		if (FL->data[i] <= 0)
			continue;
		int64_t x = i % F->grid.n[0], y = (i / F->grid.n[0]) % F->grid.n[1], z = i / (F->grid.n[0] * F->grid.n[1]);
		double idx[3] = {(double)x, (double)y, (double)z}, p[3], a[3], b[3];
		ffdp_mat4_apply_point(&i2p, idx, p);
		ffdp_mat4_apply_point(T, p, a);
		ffdp_mat4_apply_point(T0, p, b);
		sum += sqrt((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) + (a[2] - b[2]) * (a[2] - b[2]));
		cnt++;
	}
	return sum / (double)cnt;
}

/* Register M to F with o; the result's distance (mm) from T0 over FL's object. */
static double affine_run(const char *what, const ffdp_volume *F, const ffdp_volume *M, const ffdp_volume *FL,
			 const ffdp_mat4 *T0, const ffdp_reg_opts *o)
{
	ffdp_error err = {0};
	ffdp_reg_result res;
	double e = INFINITY;
	CHECK_OK(ffdp_register(F, M, o, &res, &err), &err, "%s: registration runs", what);
	if (!err.code)
		e = affine_error(F, FL, &res.T, T0);
	ffdp_reg_result_free(&res);
	return e;
}

/* The 64x72x64 phantom at 2.25 mm (no deformation) as F with its labels
 * FL, and M = F resampled through T0^-1, so that registering M to F must
 * find T0 (as a map from F's points to M's: M(T0 x) = F(x)). */
static void affine_pair(const char *what, const ffdp_mat4 *T0, ffdp_volume *F, ffdp_volume *M, ffdp_volume *FL)
{
	ffdp_error err = {0};
	ffdp_phantom_opts po = ffdp_phantom_defaults();
	po.n[0] = 64, po.n[1] = 72, po.n[2] = 64;
	po.spacing[0] = po.spacing[1] = po.spacing[2] = 2.25;
	po.amplitude_mm = 0;
	CHECK_OK(ffdp_phantom_make(&po, F, NULL, FL, NULL, NULL, &err), &err, "%s: phantom", what);
	ffdp_mat4 T0i;
	ffdp_mat4_inverse(*T0, &T0i, &err);
	ffdp_backend *be = NULL;
	ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err);
	CHECK_OK(ffdp_warp_volume(be, F, &F->grid, &T0i, NULL, FFDP_INTERP_LINEAR, M, &err), &err,
		 "%s: moving image through a known affine", what);
	ffdp_backend_close(be);
}

/* A known affine: moving = fixed resampled through T0; the affine stage
 * must recover T0 (its effect on the object, in mm). */
static void check_affine(void)
{
	ffdp_error err = {0};
	double th = 0.12, c = cos(th), s = sin(th);
	double lin[9] = {1.05 * c, -s, 0.02, s, 0.95 * c, 0.0, -0.03, 0.01, 1.02};
	double t[3] = {4.0, -3.0, 2.5};
	ffdp_mat4 T0 = ffdp_mat4_from_linear(lin, t);
	ffdp_volume F = {0}, M = {0}, FL = {0};
	affine_pair("affine", &T0, &F, &M, &FL);
	ffdp_reg_opts o;
	ffdp_reg_preset("affine", &o, &err);
	double e = affine_run("affine", &F, &M, &FL, &T0, &o);
	CHECK(e < 0.5 * F.grid.spacing[0], "affine: recovered transform within %.3f mm (mean over the object) of the truth",
	      e);
	ffdp_volume_free(&F), ffdp_volume_free(&M), ffdp_volume_free(&FL);
}

/* Winsorising: a few voxels 50 times brighter than the tissue in each
 * image squeeze min-max normalised tissue into MI's lowest bins; clipped
 * at the 0.5 % and 99.5 % quantiles, MI's affine stage recovers T0.  Also:
 * quantiles out of order are refused. */
static void check_winsorize(void)
{
	ffdp_error err = {0};
	double th = 0.10, c = cos(th), s = sin(th);
	double lin[9] = {c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0}, t[3] = {5.0, -4.0, 3.0};
	ffdp_mat4 T0 = ffdp_mat4_from_linear(lin, t);
	ffdp_volume F = {0}, M = {0}, FL = {0};
	affine_pair("winsorize", &T0, &F, &M, &FL);
	float fmax = 0;
	const int64_t n = ffdp_grid_voxels(&F.grid);
	for (int64_t i = 0; i < n; i++)
		fmax = F.data[i] > fmax ? F.data[i] : fmax;
	tu_rng r = tu_rng_make(5);
	for (int k = 0; k < 200; k++) { /* 0.07 % of the voxels */
		F.data[(int64_t)(tu_uniform(&r) * (double)n)] = 50.0f * fmax;
		M.data[(int64_t)(tu_uniform(&r) * (double)n)] = 50.0f * fmax;
	}
	double e[2];
	for (int w = 0; w < 2; w++) {
		ffdp_reg_opts o;
		ffdp_reg_preset("affine", &o, &err);
		for (int k = 0; k < o.nstages; k++)
			if (o.stages[k].kind != FFDP_STAGE_MOMENTS)
				o.stages[k].metric.kind = FFDP_METRIC_MI, o.stages[k].metric.mi_bins = 32;
		if (w)
			o.winsorize[0] = 0.005, o.winsorize[1] = 0.995;
		e[w] = affine_run(w ? "winsorize: MI affine, winsorized" : "winsorize: MI affine", &F, &M, &FL, &T0, &o);
	}
	CHECK(e[1] < 0.5 * F.grid.spacing[0] && e[0] > 2.0 * e[1],
	      "winsorize: MI affine with outliers within %.3f mm of the truth winsorized, %.3f mm not", e[1], e[0]);
	ffdp_reg_opts o;
	ffdp_reg_preset("affine", &o, &err);
	o.winsorize[0] = 0.9, o.winsorize[1] = 0.1;
	ffdp_reg_result res;
	ffdp_status st = ffdp_register(&F, &M, &o, &res, &err);
	CHECK(st == FFDP_ERR_ARG && strstr(err.msg, "winsorize"), "winsorize [0.9, 0.1] refused: %s", err.msg);
	ffdp_volume_free(&F), ffdp_volume_free(&M), ffdp_volume_free(&FL);
}

/* A moving mask: the moving image's half x >= nx/2 (its own index space)
 * shows the phantom through another transform T1 (6 mm apart), the other
 * half through T0.  A mask of that first half's complement (less a 2-voxel
 * margin) leaves the affine stage T0's evidence alone: it recovers T0,
 * where without the mask the two halves pull it between T0 and T1. */
static void check_moving_mask(void)
{
	ffdp_error err = {0};
	double th = 0.06, c = cos(th), s = sin(th);
	double lin[9] = {c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0}, t0[3] = {3.0, -2.0, 1.5}, t1[3] = {3.0, 4.0, 1.5};
	ffdp_mat4 T0 = ffdp_mat4_from_linear(lin, t0), T1 = ffdp_mat4_from_linear(lin, t1);
	ffdp_volume F = {0}, M = {0}, FL = {0}, F1 = {0}, M1 = {0}, FL1 = {0}, MM = {0};
	affine_pair("moving mask", &T0, &F, &M, &FL);
	affine_pair("moving mask, second half", &T1, &F1, &M1, &FL1);
	CHECK_OK(ffdp_volume_alloc(&MM, &M.grid, &err), &err, "moving mask: its volume");
	const int64_t n = ffdp_grid_voxels(&M.grid), nx = M.grid.n[0];
	for (int64_t i = 0; i < n; i++) {
		const int64_t x = i % nx;
		if (x >= nx / 2)
			M.data[i] = M1.data[i];
		MM.data[i] = x < nx / 2 - 2 ? 1.0f : 0.0f;
	}
	double e[2];
	for (int w = 0; w < 2; w++) {
		ffdp_reg_opts o;
		ffdp_reg_preset("affine", &o, &err);
		o.moving_mask = w ? &MM : NULL;
		e[w] = affine_run(w ? "moving mask: affine, masked" : "moving mask: affine", &F, &M, &FL, &T0, &o);
	}
	CHECK(e[1] < 0.5 * F.grid.spacing[0] && e[0] > 2.0 * e[1],
	      "moving mask: the affine stage %.3f mm from T0 with the mask, %.3f mm without", e[1], e[0]);
	ffdp_volume small = {0};
	ffdp_grid g = M.grid;
	g.n[0] = 8;
	CHECK_OK(ffdp_volume_alloc(&small, &g, &err), &err, "moving mask: a volume on another grid");
	ffdp_reg_opts o;
	ffdp_reg_result res;
	ffdp_reg_preset("affine", &o, &err);
	o.moving_mask = &small;
	ffdp_status st = ffdp_register(&F, &M, &o, &res, &err);
	CHECK(st == FFDP_ERR_DATA && strstr(err.msg, "moving mask is not on the moving image's grid"),
	      "moving mask: one on another grid is refused (%s)", err.msg);
	ffdp_volume_free(&small);
	ffdp_volume_free(&F), ffdp_volume_free(&M), ffdp_volume_free(&FL), ffdp_volume_free(&MM);
	ffdp_volume_free(&F1), ffdp_volume_free(&M1), ffdp_volume_free(&FL1);
}

int main(void)
{
	ffdp_log_set_level(FFDP_LOG_WARN);
	check_winsorize();
	check_moving_mask();
	check_affine();
	/* 8 mm peak deformation: 3.6 voxels at 2.25 mm; FireANTs' default smoothing */
	for (int compact = 0; compact <= 2; compact++) {
		check_deformable("greedy", 64, 72, 64, 2.25, 8.0, 1.0, 0.5, compact);
		check_deformable("syn", 64, 72, 64, 2.25, 8.0, 1.0, 0.5, compact);
		/* 2-D: a 5x5 LNCC window sees a fifth of the samples of 3-D, so
		 * noise needs more smoothing */
		check_deformable("greedy", 96, 112, 1, 1.5, 4.0, 2.0, 1.0, compact);
	}
	return check_done();
}

/* ffdp_register on the CUDA backend against the CPU backend, end to end on
 * the 64x72x64 phantom at 2.25 mm (presets "greedy" and "syn", "greedy"
 * scoring MI under a fixed mask, "syn" with a moving mask, and "greedy"
 * scoring MI under both): the same T
 * (linear entries within 1e-3, translations within 1e-3 of the image's
 * half diagonal, the scale the linear stages optimise translations in),
 * final losses within 1 %, endpoint errors against the known deformation
 * below 0.5 voxel and within 0.1 of each other, and label Dice of the
 * warped moving labels within 0.01.  Prints both wall times.  Needs a GPU: built with CUDA, labelled
 * "gpu". */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

typedef struct phantom {
	ffdp_volume F, M, FL, ML;
	ffdp_field truth;
} phantom;

static double half_diagonal(const ffdp_grid *g)
{
	double e = 0;
	for (int a = 0; a < 3; a++)
		e += pow((double)g->n[a] * g->spacing[a], 2);
	return 0.5 * sqrt(e);
}

/* Dice of the moving labels warped through r (on the CPU). */
static double warped_dice(const phantom *ph, const ffdp_reg_result *r)
{
	ffdp_error err = {0};
	ffdp_backend *cpu = NULL;
	ffdp_volume W = {0};
	double d = -1;
	if (!ffdp_backend_open(FFDP_BACKEND_CPU, 0, &cpu, &err) &&
	    !ffdp_warp_volume(cpu, &ph->ML, &ph->F.grid, &r->T, r->has_warp ? &r->u : NULL, FFDP_INTERP_LABEL, &W,
			      &err))
		d = tu_mean_dice(&ph->FL, &W);
	ffdp_volume_free(&W);
	ffdp_backend_close(cpu);
	return d;
}

/* mask (or NULL): the fixed mask; mmask (or NULL): the moving mask; mi:
 * every stage scores MI (32 bins).  With a fixed mask alone the GPU is
 * told the mask's maximum and reads nothing back; with a moving mask MI
 * finds the weights' maximum itself. */
static void compare(const char *preset, const phantom *ph, const ffdp_volume *mask, const ffdp_volume *mmask, int mi)
{
	ffdp_error err = {0};
	ffdp_reg_opts o;
	ffdp_reg_result rc, rg, rg2;
	memset(&rc, 0, sizeof(rc)), memset(&rg, 0, sizeof(rg)), memset(&rg2, 0, sizeof(rg2));
	char name[64];
	snprintf(name, sizeof(name), "%s%s%s%s", preset, mi ? " (MI)" : "", mask ? " (fixed mask)" : "",
		 mmask ? " (moving mask)" : "");
	CHECK_OK(ffdp_reg_preset(preset, &o, &err), &err, "%s: preset", name);
	o.fixed_mask = mask, o.moving_mask = mmask;
	for (int k = 0; mi && k < o.nstages; k++)
		o.stages[k].metric.kind = FFDP_METRIC_MI, o.stages[k].metric.mi_bins = 32;
	o.backend = FFDP_BACKEND_CPU;
	CHECK_OK(ffdp_register(&ph->F, &ph->M, &o, &rc, &err), &err, "%s: CPU registration runs", name);
	o.backend = FFDP_BACKEND_CUDA;
	CHECK_OK(ffdp_register(&ph->F, &ph->M, &o, &rg, &err), &err, "%s: CUDA registration runs", name);
	CHECK_OK(ffdp_register(&ph->F, &ph->M, &o, &rg2, &err), &err, "%s: CUDA registration runs again", name);
	if (!rc.has_warp || !rg.has_warp || !rg2.has_warp)
		goto out;
	/* no floating-point atomics in any reduction: a run repeats bit for bit */
	size_t ub = (size_t)ffdp_grid_voxels(&rg.u.grid) * sizeof(float);
	int same = !memcmp(rg.T.m, rg2.T.m, sizeof(rg.T.m)) && rg.u.ncomp == rg2.u.ncomp;
	for (int c = 0; same && c < rg.u.ncomp; c++)
		same = !memcmp(rg.u.c[c], rg2.u.c[c], ub) && (!rg.has_inverse || !memcmp(rg.u_inv.c[c], rg2.u_inv.c[c], ub));
	CHECK(same, "%s: two CUDA runs give the same T, warp and inverse, bit for bit", name);
	printf("     %s: wall time CPU %.2f s, CUDA %.2f s\n", name, rc.seconds, rg.seconds);
	for (int k = 0; k < rc.nstages && k < rg.nstages; k++)
		printf("     %s: stage %-7s CPU %.3f s (loss %.6f), CUDA %.3f s (loss %.6f)\n", name,
		       ffdp_stage_name(rc.stages[k].kind), rc.stages[k].seconds, rc.stages[k].final_loss,
		       rg.stages[k].seconds, rg.stages[k].final_loss);
	double dA = 0, dt = 0;
	for (int r = 0; r < 3; r++) {
		for (int c = 0; c < 3; c++)
			dA = fmax(dA, fabs(rc.T.m[4 * r + c] - rg.T.m[4 * r + c]));
		dt = fmax(dt, fabs(rc.T.m[4 * r + 3] - rg.T.m[4 * r + 3]));
	}
	double rho = half_diagonal(&ph->F.grid);
	CHECK(dA < 1e-3, "%s: linear part of T agrees within %.2e < 1e-3", name, dA);
	CHECK(dt < 1e-3 * rho, "%s: translation of T agrees within %.4f mm < 1e-3 x %.1f mm", name, dt, rho);
	/* Every op agrees to rounding (gpu_test_gpu_ops), but hundreds of
	 * iterations amplify the last bits where the image carries no
	 * information (the fields differ by 0.06-0.3 voxel in the noise), and a
	 * plateau test may stop a level an iteration apart.  So the backends are
	 * held to the same quality, not the same bits: loss, the error against
	 * the known deformation, label overlap, and the inverse. */
	int last = rc.nstages - 1;
	/* within 1 % of the loss: SyN's final loss moved 5.8e-3 (-0.7627
	 * against the CPU's -0.7685) when only the order of gW's sums changed
	 * (the affine T equal to 6 digits), the greedy's 3e-4 */
	const double lc = rc.stages[last].final_loss, lg = rg.stages[last].final_loss;
	CHECK(fabs(lc - lg) < 1e-2 * fabs(lc), "%s: final losses agree within 1 %% (%.6f, %.6f)", name, lc, lg);
	double ec = 9, eg = 9;
	ffdp_error e2 = {0};
	CHECK_OK(ffdp_eval_endpoint_error(&rc.T, &rc.u, &ph->truth, &ph->FL, &ec, &e2) ||
		 ffdp_eval_endpoint_error(&rg.T, &rg.u, &ph->truth, &ph->FL, &eg, &e2), &e2, "%s: endpoint errors",
		 name);
	CHECK(ec < 0.5 && eg < 0.5 && fabs(ec - eg) < 0.1,
	      "%s: endpoint error against the truth CPU %.3f, CUDA %.3f voxel (both < 0.5, within 0.1); "
	      "mean |u_cpu - u_cuda| %.3f voxel",
	      name, ec, eg, tu_field_mean_diff(&rc.u, &rg.u));
	CHECK(rc.has_inverse && rg.has_inverse, "%s: both have an inverse", name);
	double dc = warped_dice(ph, &rc), dg = warped_dice(ph, &rg);
	CHECK(dc > 0.9 && fabs(dc - dg) < 0.01, "%s: warped label Dice CPU %.4f, CUDA %.4f (within 0.01)", name, dc,
	      dg);
out:
	ffdp_reg_result_free(&rc);
	ffdp_reg_result_free(&rg);
	ffdp_reg_result_free(&rg2);
}

int main(void)
{
	ffdp_log_set_level(FFDP_LOG_WARN);
	ffdp_error err = {0};
	ffdp_backend *gpu = NULL;
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CUDA, 0, &gpu, &err), &err, "CUDA backend");
	if (!gpu)
		return check_done();
	ffdp_backend_close(gpu);
	ffdp_phantom_opts po = ffdp_phantom_defaults();
	po.n[0] = 64, po.n[1] = 72, po.n[2] = 64;
	po.spacing[0] = po.spacing[1] = po.spacing[2] = 2.25;
	po.amplitude_mm = 8.0;
	phantom ph;
	memset(&ph, 0, sizeof(ph));
	CHECK_OK(ffdp_phantom_make(&po, &ph.F, &ph.M, &ph.FL, &ph.ML, &ph.truth, &err), &err, "phantom 64x72x64");
	if (!err.code) {
		compare("greedy", &ph, NULL, NULL, 0);
		compare("syn", &ph, NULL, NULL, 0);
		/* masks: 1 inside each image's labelled region, 0.25 outside */
		ffdp_volume mk = {0}, mm = {0};
		CHECK_OK(ffdp_volume_alloc(&mk, &ph.F.grid, &err) || ffdp_volume_alloc(&mm, &ph.M.grid, &err), &err,
			 "masks");
		for (int64_t i = 0; mk.data && mm.data && i < ffdp_grid_voxels(&mk.grid); i++) {
			mk.data[i] = ph.FL.data[i] > 0.5f ? 1.0f : 0.25f;
			mm.data[i] = ph.ML.data[i] > 0.5f ? 1.0f : 0.25f;
		}
		if (mk.data && mm.data) {
			compare("greedy", &ph, &mk, NULL, 1);
			compare("syn", &ph, NULL, &mm, 0);
			compare("greedy", &ph, &mk, &mm, 1);
		}
		ffdp_volume_free(&mk), ffdp_volume_free(&mm);
	}
	ffdp_volume_free(&ph.F), ffdp_volume_free(&ph.M), ffdp_volume_free(&ph.FL), ffdp_volume_free(&ph.ML);
	ffdp_field_free(&ph.truth);
	return check_done();
}

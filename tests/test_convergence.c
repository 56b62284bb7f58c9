/* The stage loops' lagged convergence rule (src/reg/convergence.c) on
 * scripted loss sequences, against a plain least-squares reference: a
 * level stops one iteration after the iteration whose loss triggers the
 * test, reports every iteration's loss once, and its last loss is the
 * final iteration's.  Then pending losses (ops.h ffdp_scalar) on the CPU:
 * ready at once with the synchronous call's bits, and refused where they
 * cannot apply. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "reg/reg_internal.h"
#include "testutil.h"

/* First t whose last w losses (oldest first) have a fitted slope > 0 or
 * -slope / mean |loss| < tol; -1 when none (or w < 2). */
static int reference_trigger(const double *loss, int n, int w, double tol)
{
	if (w < 2)
		return -1;
	for (int t = w - 1; t < n; t++) {
		double xm = (w - 1) / 2.0, ym = 0, mag = 0, num = 0, den = 0;
		for (int k = 0; k < w; k++)
			ym += loss[t - w + 1 + k] / w, mag += fabs(loss[t - w + 1 + k]) / w;
		for (int k = 0; k < w; k++) {
			num += (k - xm) * (loss[t - w + 1 + k] - ym);
			den += (k - xm) * (k - xm);
		}
		const double slope = num / den;
		if (slope > 0 || -slope / fmax(mag, 1e-12) < tol)
			return t;
	}
	return -1;
}

typedef struct run_out {
	int ran;         /* iterations run */
	int early;       /* a stop was asked for before the expected iteration */
	int64_t done;    /* iterations reported to the progress count */
	double last;     /* the level's last loss */
	ffdp_status st;
} run_out;

/* The stage loop's bookkeeping over a scripted sequence, at most iters. */
static run_out run_script(ffdp_backend *be, const double *loss, int iters, int window, double tol, int expect_stop)
{
	ffdp_stage st = {0};
	st.kind = FFDP_STAGE_GREEDY;
	st.window = window, st.tol = tol;
	ffdp_progress pb;
	ffdp_progress_begin(&pb, "test", iters);
	run_out r = {0, 0, 0, NAN, FFDP_OK};
	ffdp_error err = {0};
	const int64_t n[3] = {5, 4, 3};
	reg_iter ri;
	reg_iter_init(&ri, &st, be, &pb, &r.done, n);
	int it, stop = 0;
	for (it = 0; it < iters && !stop && !r.st; it++) {
		ffdp_scalar x = {0};
		x.value = loss[it], x.ready = 1;
		r.st = reg_iter_end(&ri, it, &x, &stop, &err);
		if (stop && it != expect_stop)
			r.early = 1;
	}
	r.ran = it;
	if (!r.st)
		r.st = reg_iter_finish(&ri, &r.last, &err);
	ffdp_progress_end(&pb);
	return r;
}

static void check_sequence(ffdp_backend *be, const char *name, const double *loss, int n, int window, double tol)
{
	const int j = reference_trigger(loss, n, window, tol);
	CHECK(j < 0 || j + 1 < n, "%s: the script runs past the trigger (%d of %d)", name, j, n);
	/* uncapped: iterations 0 .. j + 1 */
	const int want = j < 0 ? n : j + 2;
	run_out r = run_script(be, loss, n, window, tol, j + 1);
	if (j < 0)
		CHECK(!r.st && r.ran == want && !r.early, "%s (window %d): the test never fires, all %d iterations run",
		      name, window, r.ran);
	else
		CHECK(!r.st && r.ran == want && !r.early,
		      "%s (window %d): the test fires on iteration %d's loss, the level stops after %d iterations (want %d)",
		      name, window, j, r.ran, want);
	CHECK(r.done == r.ran, "%s: every iteration's loss reported once (%lld of %d)", name, (long long)r.done, r.ran);
	CHECK(r.last == loss[r.ran - 1], "%s: last loss %.9g is the final iteration's %.9g", name, r.last,
	      loss[r.ran - 1]);
	if (j < 0)
		return;
	/* capped at the trigger's own iteration, and one after it: the cap wins */
	for (int cap = j + 1; cap <= j + 2; cap++) {
		r = run_script(be, loss, cap, window, tol, j + 1);
		CHECK(!r.st && r.ran == cap && r.last == loss[cap - 1] && r.done == cap,
		      "%s: %d iterations allowed, %d run, last loss that of iteration %d", name, cap, r.ran, cap - 1);
	}
}

/* Pending losses on a synchronous backend: ready, the same bits. */
static void check_pending_cpu(ffdp_backend *be, tu_rng *rng)
{
	enum { NX = 13, NY = 7, NZ = 5, N = NX * NY * NZ };
	float *f = malloc(N * sizeof(float)), *m = malloc(N * sizeof(float)), *g = malloc(N * sizeof(float));
	ffdp_error err = {0};
	tu_fill_uniform(rng, f, N, 0, 1);
	tu_fill_uniform(rng, m, N, 0, 1);
	for (int op = 0; op < 2; op++) {
		const char *name = op ? "mse" : "lncc";
		double sync = 0;
		ffdp_loss_args a = {0};
		a.f = (ffdp_img){f, {NX, NY, NZ}}, a.m = (ffdp_img){m, {NX, NY, NZ}};
		a.scale = 1.0, a.gm = g, a.loss = &sync;
		ffdp_lncc_opts o = {.k = 3, .exact_grad = 1};
		CHECK_OK(op ? ffdp_op_mse(be, &a, &err) : ffdp_op_lncc(be, &a, &o, &err), &err, "%s: synchronous", name);
		ffdp_scalar x = {0};
		a.loss = NULL, a.later = &x;
		double got = NAN;
		CHECK_OK(op ? ffdp_op_mse(be, &a, &err) : ffdp_op_lncc(be, &a, &o, &err), &err, "%s: pending", name);
		CHECK_OK(ffdp_scalar_get(be, &x, &got, &err), &err, "%s: pending read", name);
		CHECK(x.ready && got == sync, "%s: a pending loss is ready on the CPU with the same bits (%.17g, %.17g)",
		      name, got, sync);
		double sum;
		a.sum = &sum;
		CHECK((op ? ffdp_op_mse(be, &a, &err) : ffdp_op_lncc(be, &a, &o, &err)) == FFDP_ERR_ARG,
		      "%s: a pending loss with sum refused: %s", name, err.msg);
	}
	ffdp_scalar bad = {0};
	double v;
	CHECK(ffdp_scalar_get(be, &bad, &v, &err) == FFDP_ERR_ARG, "scalar_get: nothing pending on the CPU: %s",
	      err.msg);
	free(f), free(m), free(g);
}

int main(void)
{
	ffdp_backend *be = NULL;
	ffdp_error err = {0};
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "cpu backend");
	if (!be)
		return check_done();
	enum { N = 200 };
	double decay[N], rise[N], noisy[N], flat[N];
	tu_rng rng = tu_rng_make(99);
	for (int t = 0; t < N; t++) {
		decay[t] = -0.8 + 0.5 * exp(-t / 12.0);                 /* a plateau */
		rise[t] = -0.5 + 0.002 * (t - 30) * (t - 30) / 30.0;    /* falls, then rises */
		noisy[t] = -0.6 + 0.3 * exp(-t / 40.0) + 2e-3 * (tu_uniform(&rng) - 0.5);
		flat[t] = -0.4 - 0.05 * t;                               /* never converges */
	}
	check_sequence(be, "plateau", decay, N, 10, 1e-3);
	check_sequence(be, "plateau", decay, N, 25, 1e-4);
	check_sequence(be, "rise", rise, N, 8, 1e-9);
	check_sequence(be, "noisy", noisy, N, 15, 5e-4);
	check_sequence(be, "steady descent", flat, N, 10, 1e-3);
	check_sequence(be, "window 1", decay, N, 1, 1e-3);
	check_pending_cpu(be, &rng);
	ffdp_backend_close(be);
	return check_done();
}

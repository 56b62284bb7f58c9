/* Internal to the phantom (src/synth): the smooth deformation and the hash
 * that keys every random number, so results never depend on thread count. */
#ifndef FFDP_SYNTH_H
#define FFDP_SYNTH_H

#include <stdint.h>

#include "ffdp/status.h"

enum { PH_NBUMPS = 8 };

/* d(y) = sum_k w_k exp(-|y - c_k|^2 / (2 sigma_k^2)), LPS mm. */
typedef struct ph_deform {
	double c[PH_NBUMPS][3];
	double w[PH_NBUMPS][3];
	double sigma[PH_NBUMPS];
	double inv2s2[PH_NBUMPS]; /* 1 / (2 sigma^2) */
} ph_deform;

/* splitmix64 finaliser: a bijective 64-bit mix. */
uint64_t ph_hash(uint64_t x);
/* Uniform in (0, 1] from a 64-bit key. */
double ph_unit(uint64_t key);

/* Random bumps centred inside the brain (semi-axes brain[3], mm), scaled so
 * that max |d| = amplitude over the field of view [-half, half] while the
 * Frobenius norm of grad d stays <= PH_MAX_GRAD (widening the bumps when it
 * would not).  dim == 2: in-plane bumps at z = 0, d_z = 0. */
ffdp_status ph_deform_make(ph_deform *d, const double half[3], const double brain[3], int dim,
			   double amplitude, uint64_t seed, ffdp_error *err);
/* d(y) and, if jac is not NULL, its Jacobian (row-major, jac[3r+c] = dd_r/dy_c). */
void ph_deform_eval(const ph_deform *d, const double y[3], double out[3], double jac[9]);
/* Solve y + d(y) = x for y (Newton), given dx = d(x) and jx its Jacobian;
 * 0 on convergence (error below 1e-7 mm). */
int ph_deform_invert(const ph_deform *d, const double x[3], const double dx[3], const double jx[9], double y[3]);
/* Largest |d| and Frobenius |grad d| on a lattice over [-half, half]. */
void ph_deform_bounds(const ph_deform *d, const double half[3], int dim, double *dmax, double *gmax);

#define PH_MAX_GRAD 0.35

#endif

/* A synthetic brain-like phantom with tissue classes, a label map and a known
 * smooth invertible deformation, at any size.  It is defined analytically
 * in physical space, so every size samples the same object.
 *
 * fixed(x)  = P(x)
 * moving(y) = P(psi(y)),  psi a smooth diffeomorphism
 * truth u(x) = psi^-1(x) - x, so that moving(x + u(x)) = fixed(x):
 * u is the displacement a registration must recover (on the fixed grid, LPS
 * mm, T = identity).
 */
#ifndef FFDP_PHANTOM_H
#define FFDP_PHANTOM_H

#include <stdint.h>

#include "ffdp/grid.h"
#include "ffdp/status.h"
#include "ffdp/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Label values of the phantom. */
enum {
	FFDP_PH_BACKGROUND = 0,
	FFDP_PH_CSF = 1,
	FFDP_PH_GM = 2,
	FFDP_PH_WM = 3,
	FFDP_PH_VENTRICLE_L = 4,
	FFDP_PH_VENTRICLE_R = 5,
	FFDP_PH_NUCLEUS_L = 6,
	FFDP_PH_NUCLEUS_R = 7,
	FFDP_PH_NLABELS = 8,
};

typedef struct ffdp_phantom_opts {
	int64_t n[3];        /* grid size; nz = 1 gives an axial 2-D slice */
	double spacing[3];   /* mm */
	double amplitude_mm; /* peak displacement of the deformation (default 4) */
	double noise;        /* noise std as a fraction of WM intensity (default 0.02) */
	uint64_t seed;       /* noise and deformation seed */
} ffdp_phantom_opts;

/* Defaults: 96x112x96 at 1.5 mm isotropic, 4 mm deformation, 2 % noise. */
ffdp_phantom_opts ffdp_phantom_defaults(void);

/* Any output pointer may be NULL to skip it.  Outputs are allocated here and
 * owned by the caller. */
ffdp_status ffdp_phantom_make(const ffdp_phantom_opts *o, ffdp_volume *fixed, ffdp_volume *moving,
			      ffdp_volume *fixed_labels, ffdp_volume *moving_labels, ffdp_field *truth,
			      ffdp_error *err);

/* The phantom as a generator of planes, for volumes too large to hold
 * whole (ffdp synth): ffdp_phantom_make is planes [0, nz) of it, and any
 * split into slabs gives the same values. */
typedef struct ffdp_phantom ffdp_phantom;

/* Outputs of ffdp_phantom_generate: each NULL to skip it, else (z1 - z0)
 * planes of nx * ny floats; u[2] stays NULL for a 2-D phantom. */
typedef struct ffdp_phantom_planes {
	float *fixed, *moving, *fixed_labels, *moving_labels, *u[3];
} ffdp_phantom_planes;

ffdp_status ffdp_phantom_create(const ffdp_phantom_opts *o, ffdp_phantom **out, ffdp_error *err);
/* Identity direction, centred at physical 0. */
const ffdp_grid *ffdp_phantom_grid(const ffdp_phantom *p);
ffdp_status ffdp_phantom_generate(const ffdp_phantom *p, int64_t z0, int64_t z1, const ffdp_phantom_planes *out,
				  ffdp_error *err);
void ffdp_phantom_free(ffdp_phantom *p);

#ifdef __cplusplus
}
#endif
#endif

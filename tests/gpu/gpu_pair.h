/* Host/device pairs for the GPU tests: the same values on the CPU backend
 * (host memory) and the CUDA backend, and comparisons of a device result
 * with a host one.  Allocation failures end the test (exit 2): nothing can
 * be checked without the buffers. */
#ifndef FFDP_TEST_GPU_PAIR_H
#define FFDP_TEST_GPU_PAIR_H

#include <stdint.h>

#include "ffdp/ffdp.h"
#include "testutil.h"

typedef struct gp_env {
	ffdp_backend *cpu, *gpu;
	tu_rng rng;
	ffdp_error err;
} gp_env;

float *gp_h_new(int64_t n);                                  /* zeroed host floats */
float *gp_d_dup(gp_env *e, const float *x, int64_t n);       /* device copy of host x */
float *gp_d_get(gp_env *e, const float *d, int64_t n);       /* host copy of device d */
/* max |a - b| / max |b|; an all-zero (or NaN) reference gives +inf: the
 * comparison would prove nothing. */
double gp_rel(const float *a, const float *b, int64_t n);
double gp_rel_dev(gp_env *e, const float *d, const float *h, int64_t n);
int64_t gp_mismatches(gp_env *e, const float *d, const float *h, int64_t n); /* values differ */
int64_t gp_bit_diffs(gp_env *e, const float *d, const float *h, int64_t n);  /* bits differ */

/* A field as host (h) and device (d) copies of the same uniform random
 * values in [lo, hi); ncomp from n[2] (2-D: 2). */
typedef struct gp_vec {
	ffdp_vec h, d;
	int64_t nv;
} gp_vec;

gp_vec gp_vec_new(gp_env *e, const int64_t n[3], double lo, double hi);
void gp_vec_free(gp_env *e, gp_vec *p);
double gp_vec_rel(gp_env *e, const gp_vec *p);        /* device vs host, worst component */
int64_t gp_vec_bit_diffs(gp_env *e, const gp_vec *p);

#endif

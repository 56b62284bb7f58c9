/* Shared test helpers: a seeded RNG, random grids and volumes, error norms. */
#ifndef FFDP_TESTUTIL_H
#define FFDP_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "ffdp/ffdp.h"

typedef struct tu_rng {
	uint64_t s;
} tu_rng;

tu_rng tu_rng_make(uint64_t seed);
uint64_t tu_next(tu_rng *r);
/* Uniform in [0, 1). */
double tu_uniform(tu_rng *r);
/* Standard normal. */
double tu_normal(tu_rng *r);

/* A random proper rotation (row-major 3x3). */
void tu_random_rotation(tu_rng *r, double R[9]);
/* A grid of size n with random anisotropic spacing in [0.6, 1.8] mm, a random
 * oblique direction (proper rotation) and a random origin. */
ffdp_grid tu_random_grid(tu_rng *r, int64_t nx, int64_t ny, int64_t nz);

/* Fill with i.i.d. uniform [lo, hi). */
void tu_fill_uniform(tu_rng *r, float *x, int64_t n, double lo, double hi);
/* Fill a volume with a smooth random image: a sum of a few random Gaussian
 * blobs plus a little noise, values roughly in [0, 1]. Smoothness keeps
 * finite differences meaningful. */
void tu_fill_smooth(tu_rng *r, float *x, const int64_t n[3], double noise);

/* max_i |a_i - b_i| / max(max_i |b_i|, floor) */
double tu_rel_err(const float *a, const double *b, int64_t n, double floor);
double tu_max_abs(const double *b, int64_t n);

/* A host vector field for op tests: zero-filled planes, ncomp from nz. */
typedef struct tfield {
	float *c[3];
	int64_t n[3], nv;
	int nc;
} tfield;

tfield tu_field_new(int64_t nx, int64_t ny, int64_t nz);
void tu_field_free(tfield *f);
ffdp_vec tu_field_vec(const tfield *f);

/* Mean Dice over the labels present in both maps (-1 on error). */
double tu_mean_dice(const ffdp_volume *a, const ffdp_volume *b);

/* Mean over voxels of |a - b|_2 (a's components), in voxels of a's first
 * spacing; a and b on the same grid. */
double tu_field_mean_diff(const ffdp_field *a, const ffdp_field *b);

/* bf16 moment words (FFDP_MOMENTS_BF16), written here independently of
 * the library: half 0 (m, high 16 bits) or 1 (v) of word w as a float; a
 * word of m and v truncated to bf16; bf16's unit in the last place at x. */
float tu_bf16_half(float w, int half);
/* A sampler call (unorm16 tests): M (n of mn; NULL when given as moving16)
 * into out (n of on) through a slightly oblique W, B = I, u, interp, pad. */
ffdp_sample_args tu_sample_args(float *M, const int64_t mn[3], float *out, const int64_t on[3], const ffdp_vec *u,
				ffdp_interp interp, ffdp_pad pad);
float tu_bf16_word(float m, float v);
double tu_bf16_ulp(double x);

/* Scratch files: a test's directory (created with its parents), names in
 * it, text files, and how many writer temporaries (".tmp-") are left. */
void tu_mkdirs(const char *path);
const char *tu_path(char *buf, size_t len, const char *dir, const char *name);
void tu_write_text(const char *path, const char *text);
int tu_count_temporaries(const char *dir);
/* A file's bytes (decompressed when decompress is set and it is gzip:
 * every member); NULL if unreadable.  Free with free(). */
unsigned char *tu_read_file(const char *path, int decompress, size_t *n);
/* data[i] = v stored as NIfTI datatype (real types; others left alone). */
void tu_nifti_store(int datatype, void *data, int64_t i, double v);
/* 1 when both files hold the same, non-empty bytes (decompressed likewise). */
int tu_same_file_bytes(const char *a, const char *b, int decompress);

#endif

/* Adam's moments as bfloat16 pairs (FFDP_MOMENTS_BF16, ops.h): m in the
 * high half of one 32-bit word a voxel and component, v in the low half.
 * Written once for both backends: C here, device code under nvcc.
 *
 * bfloat16 keeps float's exponent (v = g^2 spans 40 decades on real
 * gradients) with 8 significant bits.  m (beta1 = 0.9) moves by a tenth of
 * the difference a step and rounds to nearest even.  v (beta2 = 0.99)
 * moves by a hundredth, often under half an ulp (0.2-0.4 %), where
 * round-to-nearest would freeze it: it rounds stochastically, unbiased,
 * with 16 bits hashed from (global voxel index, component, step), so that
 * any split of the volume stores the same words.
 */
#ifndef FFDP_BF16_MOMENTS_H
#define FFDP_BF16_MOMENTS_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define BM_FN static inline __host__ __device__
#else
#define BM_FN static inline
#endif

BM_FN uint32_t ffdp_bm_bits(float x)
{
#ifdef __CUDA_ARCH__
	return __float_as_uint(x);
#else
	uint32_t b;
	memcpy(&b, &x, sizeof(b));
	return b;
#endif
}

BM_FN float ffdp_bm_float(uint32_t b)
{
#ifdef __CUDA_ARCH__
	return __uint_as_float(b);
#else
	float x;
	memcpy(&x, &b, sizeof(x));
	return x;
#endif
}

/* NaN stays a (quiet) NaN: the carry of a rounding must not reach the sign. */
BM_FN uint32_t ffdp_bm_nan(uint32_t b)
{
	return (b & 0x7fffffffu) > 0x7f800000u ? (b >> 16) | 0x40u : 0x10000u;
}

/* x to bfloat16, round to nearest even. */
BM_FN uint32_t ffdp_bm_rne(float x)
{
	const uint32_t b = ffdp_bm_bits(x), nan = ffdp_bm_nan(b);
	return nan != 0x10000u ? nan : (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
}

/* x to bfloat16, rounded up with probability (dropped bits) / 2^16 given
 * 16 uniform bits r: unbiased. */
BM_FN uint32_t ffdp_bm_stochastic(float x, uint32_t r)
{
	const uint32_t b = ffdp_bm_bits(x), nan = ffdp_bm_nan(b);
	return nan != 0x10000u ? nan : (b + (r & 0xffffu)) >> 16;
}

/* 16 bits for voxel i (global linear index), component c, step t. */
BM_FN uint32_t ffdp_bm_random(int64_t i, int c, int t)
{
	const uint64_t u = (uint64_t)i;
	uint32_t x = (uint32_t)u * 0x9e3779b1u ^ (uint32_t)(u >> 32) * 0x85ebca77u ^
		     ((uint32_t)c * 0x27d4eb2fu + (uint32_t)t * 0x165667b1u);
	/* lowbias32 finaliser: every input bit reaches every output bit */
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x & 0xffffu;
}

BM_FN float ffdp_bm_m(uint32_t w)
{
	return ffdp_bm_float(w & 0xffff0000u);
}

BM_FN float ffdp_bm_v(uint32_t w)
{
	return ffdp_bm_float(w << 16);
}

/* The stored word of new moments m, v at voxel i, component c, step t. */
BM_FN uint32_t ffdp_bm_word(float m, float v, int64_t i, int c, int t)
{
	return ffdp_bm_rne(m) << 16 | ffdp_bm_stochastic(v, ffdp_bm_random(i, c, t));
}

#endif

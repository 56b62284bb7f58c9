/* unorm16 image values (ops.h, "16-bit images"), written once for both
 * backends: C here, device code under nvcc.  The rounding of a pack is
 * spelled out (no contraction into an FMA) so that both backends store the
 * same q. */
#ifndef FFDP_UNORM16_H
#define FFDP_UNORM16_H

#include <stdint.h>

#include "ffdp/ops.h"

#ifdef __CUDACC__
#define U16_FN static inline __host__ __device__
#else
#define U16_FN static inline
#endif

U16_FN uint16_t ffdp_unorm16_of(float x)
{
	const float c = x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; /* NaN -> 0 */
#ifdef __CUDA_ARCH__
	return (uint16_t)__fadd_rn(__fmul_rn(c, 65535.0f), 0.5f);
#else
	return (uint16_t)(c * 65535.0f + 0.5f);
#endif
}

U16_FN float ffdp_unorm16_value(uint16_t q)
{
	return (float)q * FFDP_UNORM16_STEP;
}

#endif

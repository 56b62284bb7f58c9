#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "ffdp/volume.h"

int ffdp_cpu_force_scalar;

int ffdp_cpu_use_avx2(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
	if (ffdp_cpu_force_scalar == 1)
		return 0;
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
	return 0;
#endif
}

int ffdp_cpu_use_avx512(void)
{
#if defined(__GNUC__) && defined(__x86_64__)
	if (ffdp_cpu_force_scalar || !ffdp_cpu_use_avx2())
		return 0;
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
	       __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
#else
	return 0;
#endif
}

static void *cpu_alloc(ffdp_backend *be, size_t bytes, ffdp_error *err)
{
	(void)be;
	return ffdp_alloc(bytes, err);
}

static void cpu_free(ffdp_backend *be, void *p)
{
	(void)be;
	ffdp_free(p);
}

static ffdp_status cpu_copy(ffdp_backend *be, void *dst, const void *src, size_t bytes, ffdp_error *err)
{
	(void)be, (void)err;
	memcpy(dst, src, bytes);
	return FFDP_OK;
}

static ffdp_status cpu_zero(ffdp_backend *be, void *dst, size_t bytes, ffdp_error *err)
{
	(void)be, (void)err;
	memset(dst, 0, bytes);
	return FFDP_OK;
}

static void cpu_close(ffdp_backend *be)
{
	free(be);
}

static const ffdp_ops_table cpu_table = {
	.name = "cpu",
	.alloc = cpu_alloc,
	.free = cpu_free,
	.upload = cpu_copy,
	.download = cpu_copy,
	.copy = cpu_copy,
	.zero = cpu_zero,
	.host_memory = 1,
	.close = cpu_close,
	.sample = ffdp_cpu_sample,
	.sample_zrange = ffdp_cpu_sample_zrange,
	.sample_grad = ffdp_cpu_sample_grad,
	.compose = ffdp_cpu_compose,
	.invert_step = ffdp_cpu_invert_step,
	.jacobian_det = ffdp_cpu_jacobian_det,
	.moments = ffdp_cpu_moments,
	.moments_planes = ffdp_cpu_moments_planes,
	.mse = ffdp_cpu_mse,
	.lncc = ffdp_cpu_lncc,
	.mi = ffdp_cpu_mi,
	.smooth = ffdp_cpu_smooth,
	.adam_moments = ffdp_cpu_adam_moments,
	.warp_step = ffdp_cpu_warp_step,
	.moments_half = ffdp_cpu_moments_half,
	.unorm16 = ffdp_cpu_unorm16,
	.native16 = 0, /* float copies (ops.c): the GPU is where memory binds */
	.affine_scalar = ffdp_cpu_affine_scalar,
	.clamp = ffdp_cpu_clamp,
	.mul = ffdp_cpu_mul,
	.minmax = ffdp_cpu_minmax,
	.vec_linear = ffdp_cpu_vec_linear,
	.vec_max_abs_diff = ffdp_cpu_vec_max_abs_diff,
};

ffdp_status ffdp_cpu_backend_open(ffdp_backend **out, ffdp_error *err)
{
	ffdp_backend *be = calloc(1, sizeof(*be));
	if (!be)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot allocate the CPU backend");
	be->kind = FFDP_BACKEND_CPU;
	be->ops = &cpu_table;
	*out = be;
	return FFDP_OK;
}

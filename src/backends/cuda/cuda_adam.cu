/* Placeholder until the kernel lands (issue 5): fails loudly, never silently. */
#include "cuda_ops.h"

ffdp_status ffdp_cuda_adam_moments(ffdp_backend *be, ffdp_vec g, ffdp_vec m, ffdp_vec v, const ffdp_adam_opts *o, double *max_norm, ffdp_error *err)
{
	(void)be, (void)g, (void)m, (void)v, (void)o, (void)max_norm;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "adam_moments is not implemented on CUDA yet");
}

ffdp_status ffdp_cuda_warp_step(ffdp_backend *be, ffdp_vec u, ffdp_vec m, ffdp_vec v, const ffdp_warp_step_opts *o, ffdp_error *err)
{
	(void)be, (void)u, (void)m, (void)v, (void)o;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "warp_step is not implemented on CUDA yet");
}

/* Placeholder until the kernel lands (issue 5): fails loudly, never silently. */
#include "cuda_ops.h"

ffdp_status ffdp_cuda_sample(ffdp_backend *be, const ffdp_sample_args *a, ffdp_error *err)
{
	(void)be, (void)a;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "sample is not implemented on CUDA yet");
}

ffdp_status ffdp_cuda_sample_grad(ffdp_backend *be, const ffdp_sample_grad_args *a, ffdp_error *err)
{
	(void)be, (void)a;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "sample_grad is not implemented on CUDA yet");
}

/* Placeholder until the kernel lands (issue 5): fails loudly, never silently. */
#include "cuda_ops.h"

ffdp_status ffdp_cuda_jacobian_det(ffdp_backend *be, const ffdp_vec *u, const double A[9], const double G[9], ffdp_img out, ffdp_error *err)
{
	(void)be, (void)u, (void)A, (void)G, (void)out;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "jacobian_det is not implemented on CUDA yet");
}

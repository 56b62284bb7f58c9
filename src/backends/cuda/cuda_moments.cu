/* Placeholder until the kernel lands (issue 5): fails loudly, never silently. */
#include "cuda_ops.h"

ffdp_status ffdp_cuda_moments(ffdp_backend *be, ffdp_img x, double out[10], ffdp_error *err)
{
	(void)be, (void)x, (void)out;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "moments is not implemented on CUDA yet");
}

/* Placeholder until the kernel lands (issue 5): fails loudly, never silently. */
#include "cuda_ops.h"

ffdp_status ffdp_cuda_smooth(ffdp_backend *be, ffdp_img x, const ffdp_smooth_opts *o, ffdp_error *err)
{
	(void)be, (void)x, (void)o;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "smooth is not implemented on CUDA yet");
}

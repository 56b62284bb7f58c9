/* Placeholder until the kernel lands (issue 5): fails loudly, never silently. */
#include "cuda_ops.h"

ffdp_status ffdp_cuda_lncc(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_lncc_opts *o, ffdp_error *err)
{
	(void)be, (void)a, (void)o;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "lncc is not implemented on CUDA yet");
}

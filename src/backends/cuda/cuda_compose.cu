/* Placeholder until the kernel lands (issue 5): fails loudly, never silently. */
#include "cuda_ops.h"

ffdp_status ffdp_cuda_compose(ffdp_backend *be, const ffdp_compose_args *a, ffdp_error *err)
{
	(void)be, (void)a;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "compose is not implemented on CUDA yet");
}

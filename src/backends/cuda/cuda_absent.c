/* Built only when nvcc is not found: the CUDA backend reports itself absent. */
#include "../../ops/backend.h"
#include "ffdp/ffdp.h"

ffdp_status ffdp_cuda_backend_open(int device, ffdp_backend **out, ffdp_error *err)
{
	(void)device;
	*out = NULL;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "this ffdp was built without CUDA (nvcc not found)");
}

int ffdp_cuda_device_count(void)
{
	return 0;
}

ffdp_status ffdp_cuda_mem_used(size_t *used, ffdp_error *err)
{
	*used = 0;
	return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "this ffdp was built without CUDA (nvcc not found)");
}

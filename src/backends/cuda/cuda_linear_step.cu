/* The linear stages' step (ops.h, ffdp_op_linear_step) in one thread of
 * the device: linear_step.h's arithmetic, so the parameters, their Adam
 * moments and the sampler's W stay in device memory and an affine
 * iteration queues its work without waiting for dL/dW.  One thread: 12
 * parameters, a few hundred flops; its launch costs more than its work. */
#include "../../ops/linear_step.h"
#include "cuda_common.cuh"

static __global__ void __launch_bounds__(32) linear_step_kernel(ffdp_linear_step_args a)
{
	if (threadIdx.x == 0)
		ls_step(&a, a.state, a.gW, a.w);
}

ffdp_status ffdp_cuda_linear_step(ffdp_backend *be, const ffdp_linear_step_args *a, ffdp_error *err)
{
	(void)be;
	linear_step_kernel<<<1, 32>>>(*a);
	return cu_launched(err, "linear_step");
}

#!/bin/bash
# The GPU checks in one go, on the device machine, from any directory:
#   bash bench/gpu/run.sh [all|test|bench] [bench sizes...]
# configures and builds with CUDA (build-gpu/), runs `ctest -L gpu`, builds
# and runs bench_ops_gpu, the plain-PyTorch versions of its ops
# (torch_ops.py, when python3 has torch) and bench_losses_gpu, and prints
# the ffdp-against-PyTorch table last (compare_torch.py).  Logs go to $OUT
# when set (the device tool brings that folder back), else to
# build-gpu/logs.  Exit status: non-zero when the
# build, a GPU test or the benchmark fails.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
LOG=${OUT:-$BUILD/logs}
WHAT=${1:-all}
[ $# -gt 0 ] && shift
mkdir -p "$LOG"

step() { echo "== $*"; }
fail() { echo "run.sh: $* (logs in $LOG)" >&2; exit 1; }

step "device"
nvidia-smi 2>&1 | tee "$LOG/nvidia-smi.txt" | head -15

step "configure and build ($BUILD)"
# The device machine reaches no package registry: nifti_clib may come along
# in .devicedeps/ (headers and libraries copied from a Debian machine).
extra=()
if [ -d "$ROOT/.devicedeps" ]; then
	extra=(-DNIFTI_INCLUDE_DIR="$ROOT/.devicedeps/include/nifti"
		-DNIFTI2_LIBRARY="$ROOT/.devicedeps/lib/libnifti2.so" -DZNZ_LIBRARY="$ROOT/.devicedeps/lib/libznz.so")
	export LD_LIBRARY_PATH="$ROOT/.devicedeps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# ... and the test pairs in .devicedata/ (it has no ../shared)
[ -d "$ROOT/../shared/data" ] || [ ! -d "$ROOT/.devicedata" ] || extra+=(-DFFDP_DATA_DIR="$ROOT/.devicedata")
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFFDP_WITH_CUDA=ON "${extra[@]}" >"$LOG/configure.log" 2>&1 ||
	fail "configure failed"
grep -q "ffdp: CUDA ON" "$LOG/configure.log" || fail "CMake did not find nvcc: no CUDA backend"
cmake --build "$BUILD" -j"$(nproc)" >"$LOG/build.log" 2>&1 || fail "build failed"
grep -E "warning|error" "$LOG/build.log" | head -20

status=0
if [ "$WHAT" = all ] || [ "$WHAT" = test ]; then
	step "ctest -L gpu"
	(cd "$BUILD" && ctest -L gpu --output-on-failure --timeout 900) 2>&1 | tee "$LOG/ctest.log" || status=1
fi
if [ "$WHAT" = all ] || [ "$WHAT" = bench ]; then
	step "bench_ops_gpu $*"
	"$BUILD/bench_ops_gpu" "$@" 2>&1 | tee "$LOG/bench.log" || status=1
	step "PyTorch baselines (torch_ops.py $*)"
	: >"$LOG/torch.log"
	if python3 -c "import torch" 2>/dev/null; then
		# the same sizes; exit 1 when a correctness check failed or CUDA is missing
		python3 "$ROOT/bench/gpu/torch_ops.py" --device cuda --table "$LOG/torch_table.txt" ${1+--sizes "$@"} 2>&1 |
			tee "$LOG/torch.log" || status=1
	else
		echo "PyTorch is missing (python3 -c 'import torch' fails): no PyTorch baselines" | tee "$LOG/torch.log"
	fi
	step "bench_losses_gpu"
	"$BUILD/bench_losses_gpu" 2>&1 | tee "$LOG/bench_losses.log" || status=1
	step "ffdp against PyTorch (compare_torch.py)"
	python3 "$ROOT/bench/gpu/compare_torch.py" "$LOG/bench.log" "$LOG/torch.log" 2>&1 |
		tee "$LOG/compare_torch.md" || status=1
fi
exit $status

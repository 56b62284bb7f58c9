#!/bin/bash
# The whole pipeline on the GPU, in one device call: the GPU tests, the 1 mm
# pair (bench_register_gpu), and OASIS 2->1, 3->1 with SyN and greedy.
# usage: bash bench/gpu/pipeline.sh   (logs under $OUT when set)
set -u -o pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
log=${OUT:-$root/build-gpu/logs}
mkdir -p "$log"
bash "$root/bench/gpu/run.sh" test >"$log/run_test.log" 2>&1
grep -E "tests passed|Failed|Passed" "$log/run_test.log"
# The device has no ../shared: the pairs may come along in .devicedata/.
data=${FFDP_DATA_DIR:-$root/../shared/data}
[ -d "$data" ] || data=$root/.devicedata
[ -d "$data" ] || { echo "no data at $data"; exit 1; }
export LD_LIBRARY_PATH="$root/.devicedeps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cd "$root"
echo "== 1 mm pair (cfireants_validate/medium), CUDA"
"$root/build-gpu/bench_register_gpu" "$data/cfireants_validate/medium/MNI152_T1_1mm_brain.nii.gz" \
	"$data/cfireants_validate/medium/t1_brain.nii.gz" greedy syn 2>&1 | tee "$log/medium.log" | tail -30
for preset in syn greedy; do
	echo "== OASIS ${preset}, CUDA"
	OUT=$log/oasis_$preset FFDP_DATA_DIR=$data bash "$root/bench/oasis.sh" -b "$root/build-gpu" --backend cuda \
		-o "$log/oasis_$preset" -- "--$preset" 2 3 2>&1 | tail -4
done

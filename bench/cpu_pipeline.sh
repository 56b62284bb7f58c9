#!/bin/bash
# The CPU pipeline's time goals (issue #4) on two cores, as a table:
#   1 mm pair (cfireants_validate/medium): affine + greedy <= 20 s,
#   affine + SyN <= 40 s; OASIS 2 -> 1 with the default pipeline <= 60 s.
# Each run is `ffdp register --backend cpu` with its default outputs
# (inverse warp included), OMP_NUM_THREADS=2, pinned to CORES when taskset
# exists; wall time is the process's, stage times come from the report.
#
# usage: bench/cpu_pipeline.sh [-b BUILD] [-o OUT] [-c CORES] [greedy] [syn] [oasis]
set -u -o pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
out=${OUT:-$root/build/cpu_pipeline}
cores=0,1
while [ $# -gt 0 ]; do
	case "$1" in
	-b) build=$2; shift 2 ;;
	-o) out=$2; shift 2 ;;
	-c) cores=$2; shift 2 ;;
	*) break ;;
	esac
done
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=(greedy syn oasis)
data=${FFDP_DATA_DIR:-$root/../shared/data}
[ -d "$data" ] || data=$root/.devicedata
ffdp=$build/ffdp
[ -x "$ffdp" ] || { echo "cpu_pipeline.sh: no $ffdp (build first)" >&2; exit 1; }
mkdir -p "$out"
pin=()
command -v taskset >/dev/null && pin=(taskset -c "$cores")
med=$data/cfireants_validate/medium
oas=$data/oasis_trt20

# one row: name, goal seconds, register arguments
row() {
	local name=$1 goal=$2
	shift 2
	local t0 t1
	t0=$(date +%s.%N)
	if ! OMP_NUM_THREADS=2 "${pin[@]}" "$ffdp" register --backend cpu -q -o "$out/$name" "$@" \
		>"$out/$name.log" 2>&1; then
		echo "cpu_pipeline.sh: $name failed (log: $out/$name.log)" >&2
		return 1
	fi
	t1=$(date +%s.%N)
	python3 - "$name" "$goal" "$t0" "$t1" "$out/${name}_report.json" <<'EOF'
import json, sys
name, goal, t0, t1, rep = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
r = json.load(open(rep))
wall = t1 - t0
stages = ", ".join("%s %.1f" % (s["stage"], s["seconds"]) for s in r["stages"])
print("| %s | %.1f | %.0f | %.2f | %s | %d |" % (name, wall, goal, wall / goal, stages, r["peak_memory_mb"]))
EOF
}

echo "| run | wall s | goal s | wall / goal | stages (s) | peak MB |"
echo "| --- | --- | --- | --- | --- | --- |"
status=0
for r in "${runs[@]}"; do
	case "$r" in
	greedy) row greedy 20 -f "$med/MNI152_T1_1mm_brain.nii.gz" -m "$med/t1_brain.nii.gz" --greedy || status=1 ;;
	syn) row syn 40 -f "$med/MNI152_T1_1mm_brain.nii.gz" -m "$med/t1_brain.nii.gz" --syn || status=1 ;;
	oasis) row oasis_default 60 -f "$oas/subject_1/t1weighted_brain.nii.gz" \
		-m "$oas/subject_2/t1weighted_brain.nii.gz" || status=1 ;;
	*) echo "cpu_pipeline.sh: unknown run '$r' (greedy, syn, oasis)" >&2; status=1 ;;
	esac
done
exit $status

#!/bin/bash
# One registration spread over N MPI ranks on one machine, for N in a list:
# wall time, the warp's largest difference from the 1-rank run, label Dice
# and the moving-image fetch traffic from PREFIX_report.json.
#   bash bench/dist_scaling.sh [-b BUILD] [-c CORES] FIXED MOVING FIXED_LABELS MOVING_LABELS "PRESET OPTIONS" N...
# Each run gets CORES / N OpenMP threads per rank (CORES: nproc).  Outputs
# go to ${OUT:-/tmp}/dist_scaling.
set -u -o pipefail
build=build
cores=$(nproc)
while getopts "b:c:" o; do
	case $o in
	b) build=$OPTARG ;;
	c) cores=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 6 ] || { sed -n 2,8p "$0"; exit 2; }
fixed=$1 moving=$2 flab=$3 mlab=$4 opts=$5
shift 5
ffdp=$build/ffdp
dir=${OUT:-/tmp}/dist_scaling
mkdir -p "$dir"
printf '| ranks | threads/rank | seconds | max |u - u(1 rank)| mm | Dice | fetch MB/iteration |\n| --- | --- | --- | --- | --- | --- |\n'
for n in "$@"; do
	t=$((cores / n))
	[ "$t" -ge 1 ] || t=1
	p=$dir/np$n
	start=$(date +%s.%N)
	# shellcheck disable=SC2086
	OMP_NUM_THREADS=$t mpirun --allow-run-as-root --oversubscribe -np "$n" "$ffdp" register -q -f "$fixed" \
		-m "$moving" -o "$p" --no-inverse $opts >"$p.log" 2>&1 || { echo "| $n | failed: $(grep -m1 error "$p.log") |"; continue; }
	end=$(date +%s.%N)
	"$ffdp" apply -q -r "$fixed" -i "$mlab" -o "$p"_labels.nii.gz -t "$p"_warp.nii.gz -t "$p"_affine.txt \
		--interp label
	dice=$("$ffdp" eval --labels-fixed "$flab" --labels-moved "$p"_labels.nii.gz 2>/dev/null |
		awk '/^mean dice/ { print $3 }')
	# float32 NIfTI-1 data after vox_offset (no nibabel needed)
	diff=$(python3 -c '
import gzip, struct, sys, numpy as np
def load(p):
    b = gzip.open(p).read(); off = int(struct.unpack("<f", b[108:112])[0])
    return np.frombuffer(b[off:], dtype="<f4")
print("%.2e" % np.abs(load(sys.argv[1]) - load(sys.argv[2])).max())' "$p"_warp.nii.gz "$dir/np$1"_warp.nii.gz 2>/dev/null || echo "?")
	fetch=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); b = [s["fetch"]["bytes_per_iteration"] for s in r["stages"] if "fetch" in s]
print("%.1f" % (max(b) / 1e6) if b else "-")' "$p"_report.json 2>/dev/null || echo "?")
	printf "| %s | %s | %.1f | %s | %s | %s |\n" "$n" "$t" "$(awk -v a="$start" -v b="$end" "BEGIN { print b - a }")" "$diff" "$dice" "$fetch"
done

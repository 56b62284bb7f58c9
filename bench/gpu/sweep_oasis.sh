#!/bin/bash
# OASIS parameter sweep on the device, one line per configuration:
#   bash bench/gpu/sweep_oasis.sh "SUBJECTS" "CONFIG" ["CONFIG" ...]
# CONFIG: bench_oasis_gpu options, e.g. "--preset syn --lr 0.15 --k 7".
# Builds build-gpu first (bench/gpu/run.sh), prints per configuration the
# mean Dice, folding and time (full logs under $OUT).
set -u -o pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
log=${OUT:-$root/build-gpu/logs}
mkdir -p "$log"
[ -x "$root/build-gpu/bench_oasis_gpu" ] || bash "$root/bench/gpu/run.sh" none >"$log/build.log" 2>&1 ||
	{ echo "build failed"; tail -20 "$log/build.log"; exit 1; }
export LD_LIBRARY_PATH="$root/.devicedeps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
subjects=$1
shift
i=0
for cfg in "$@"; do
	i=$((i + 1))
	# shellcheck disable=SC2086
	(cd "$root" && ./build-gpu/bench_oasis_gpu $cfg $subjects) >"$log/sweep_$i.log" 2>&1
	printf '%-60s %s\n' "$cfg" "$(tail -1 "$log/sweep_$i.log")"
done

#!/bin/bash
# Strong scaling over the GPUs of one machine (run after run.sh none): the
# 1 mm pair (greedy, SyN) and a synthetic phantom pair of SIZE^3 (greedy),
# each in one process on one GPU and under mpirun -np 2..N with a GPU per
# rank (NCCL).  Prints the registration time, the transport and the final
# loss of each run.
# usage: bash bench/gpu/multi_gpu.sh [N [SIZE]]   (defaults: all GPUs, 384)
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ffdp=${FFDP:-$ROOT/build-gpu/ffdp}
data=$ROOT/../shared/data
[ -d "$data" ] || data=$ROOT/.devicedata
ngpu=${1:-$(nvidia-smi -L | grep -c '^GPU')}
size=${2:-384}
dir=$(mktemp -d)
mpi() { mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$@"; }
report() { # NAME RANKS PREFIX
	local r=$3_report.json
	printf "%-14s %5s %9s %8s %10s\n" "$1" "$2" "$(grep -oE '"seconds": [0-9.]+' "$r" | head -1 | cut -d' ' -f2)" \
		"$(grep -oE '"mpi_transport": "[a-z]+"' "$r" | cut -d'"' -f4)" \
		"$(grep -oE '"final_loss": -?[0-9.]+' "$r" | tail -1 | cut -d' ' -f2)"
}
printf "%-14s %5s %9s %8s %10s\n" run ranks seconds moves loss
M=$data/cfireants_validate/medium
pair=(-q --backend cuda -f "$M/MNI152_T1_1mm_brain.nii.gz" -m "$M/t1_brain.nii.gz")
for p in greedy syn; do
	"$ffdp" register "${pair[@]}" --$p -o "$dir/p1" && report "1mm $p" 1 "$dir/p1"
	for n in $(seq 2 "$ngpu"); do
		mpi "$n" "$ffdp" register "${pair[@]}" --$p -o "$dir/p$n" >/dev/null 2>&1 && report "1mm $p" "$n" "$dir/p$n"
	done
done
mpi "$ngpu" "$ffdp" synth -q -o "$dir/big" --size "${size}x${size}x${size}" || exit 1
big=(-q --backend cuda -f "$dir/big_fixed.nii.gz" -m "$dir/big_moving.nii.gz" --greedy)
"$ffdp" register "${big[@]}" -o "$dir/b1" && report "${size}^3 greedy" 1 "$dir/b1"
for n in $(seq 2 "$ngpu"); do
	mpi "$n" "$ffdp" register "${big[@]}" -o "$dir/b$n" >/dev/null 2>&1 && report "${size}^3 greedy" "$n" "$dir/b$n"
done
rm -rf "$dir"

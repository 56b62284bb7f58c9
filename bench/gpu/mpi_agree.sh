#!/bin/bash
# How far GPU ranks drift from one process as iterations add up: the 2 mm
# tutorial pair, an affine stage alone and a greedy stage alone, each run
# for 1, 3, 10 and 30 iterations in one process and under mpirun -np N
# (N ranks sharing one GPU stage their planes; the sums are added in rank
# order, so the first iteration differs by rounding only).  Prints the
# largest difference of T (affine) and of the warp (mm) per count.
# usage: bash bench/gpu/mpi_agree.sh [N]   (on the device, after run.sh none)
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ffdp=${FFDP:-$ROOT/build-gpu/ffdp}
data=$ROOT/../shared/data
[ -d "$data" ] || data=$ROOT/.devicedata
pair=(-f "$data/fireants_tutorial_mal35_2mm/atlas_2mm_1000_3.nii.gz" -m "$data/fireants_tutorial_mal35_2mm/atlas_2mm_1001_3.nii.gz")
np=${1:-2}
dir=$(mktemp -d)
maxdiff() { # two ANTs warps (.nii.gz, float32): largest |a - b| and |a|
	python3 - "$1" "$2" <<'PY'
import gzip, struct, sys
import numpy as np
def load(p):
    b = gzip.open(p).read()
    off = int(struct.unpack('<f', b[108:112])[0])
    dim = struct.unpack('<8h', b[40:56])
    return np.frombuffer(b[off:], dtype='<f4').reshape(dim[5], dim[3], dim[2], dim[1])
a, b = load(sys.argv[1]), load(sys.argv[2])
d = np.abs(a - b)
zs = np.argsort(d.max(axis=(0, 2, 3)))[::-1][:4]
big = (d > 1e-3 * np.abs(a).max()).sum()
print("%.3g (of %.3g); %d values > 1e-3 of it; worst z planes %s of %d" %
      (d.max(), np.abs(a).max(), big, list(zs), a.shape[1]))
PY
}
affdiff() { # two ITK affine text files: largest parameter difference
	paste <(grep '^Parameters' "$1" | tr ' ' '\n' | tail -n +2) <(grep '^Parameters' "$2" | tr ' ' '\n' | tail -n +2) |
		awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d } END { printf "%.3g\n", m }'
}
printf "%-8s %-6s %s\n" stage iters "largest difference, $np ranks vs one process"
for it in ${ITERS:-1 3 10 30}; do
	for st in affine greedy; do
		if [ $st = affine ]; then t=(--transform 'Affine[3e-3]'); else t=(--transform 'Greedy[0.5,1.5,0.5]'); fi
		args=(-q --backend cuda "${pair[@]}" "${t[@]}" --convergence $it --shrink-factors 1)
		"$ffdp" register "${args[@]}" -o "$dir/one" 2>/dev/null
		mpirun --allow-run-as-root --oversubscribe -np "$np" "$ffdp" register "${args[@]}" -o "$dir/many" >/dev/null 2>&1
		if [ $st = affine ]; then r=$(affdiff "$dir/one_affine.txt" "$dir/many_affine.txt"); else
			r=$(maxdiff "$dir/one_warp.nii.gz" "$dir/many_warp.nii.gz"); fi
		printf "%-8s %-6s %s\n" $st $it "$r"
	done
done
rm -rf "$dir"

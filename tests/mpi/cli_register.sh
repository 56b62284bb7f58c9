#!/bin/bash
# mpirun -np 3 ffdp register on a small real pair (the FireANTs tutorial's
# 2 mm OASIS heads, 96x116x128) against the single-process run (every rank
# reading and writing its own planes of the files): the warp,
# its inverse, the warped image and the affine must be the same (the
# distributed stages have the single-process bits); the report names the
# ranks and their moving-fetch traffic.
# usage: cli_register.sh FFDP_BINARY DATA_DIR SCRATCH_DIR MPIEXEC
ffdp=$1
data=$2/fireants_tutorial_mal35_2mm
dir=$3
mpiexec=$4
pass=0
fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if "$@"; then ok "${desc}"; else bad "${desc}"; fi; }

rm -rf "$dir" && mkdir -p "$dir"
args=(-q -f "$data/atlas_2mm_1000_3.nii.gz" -m "$data/atlas_2mm_1001_3.nii.gz"
	--transform 'Moments[2]' --transform 'Affine[3e-3]' --convergence 10x5 --shrink-factors 4x2
	--transform 'Greedy[0.5,1.5,0.5]' --convergence 10x3 --shrink-factors 2x1)
export OMP_NUM_THREADS=1
if "$ffdp" register "${args[@]}" -o "$dir/one" 2>"$dir/one.err"; then
	ok "one process runs"
else
	bad "one process: $(tail -3 "$dir/one.err")"
fi
if "$mpiexec" --allow-run-as-root --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
	-np 3 "$ffdp" register "${args[@]}" -o "$dir/three" >"$dir/three.err" 2>&1; then
	ok "mpirun -np 3 runs"
else
	bad "mpirun -np 3: $(tail -5 "$dir/three.err")"
fi
for f in warp inverse_warp warped; do
	desc="PREFIX_$f.nii.gz: the same voxels and header over 3 ranks" check \
		cmp -s <(zcat "$dir/one_$f.nii.gz") <(zcat "$dir/three_$f.nii.gz")
done
desc="PREFIX_affine.txt: the same" check cmp -s "$dir/one_affine.txt" "$dir/three_affine.txt"
desc="the report names 3 ranks" check grep -q '"mpi_ranks": 3' "$dir/three_report.json"
bpi=$(grep '"stage": "greedy"' "$dir/three_report.json" | sed 's/.*"bytes_per_iteration": \([0-9]*\).*/\1/')
desc="the report gives the greedy stage's fetch traffic ($bpi B per iteration, 3 ranks)" check \
	grep -q '"recv_bytes_per_rank": \[[0-9]*, [0-9]*, [0-9]*\]' "$dir/three_report.json"
desc="some moving planes were fetched" check test "${bpi:-0}" -gt 0
# the fetch cache keeps a rank's planes for the level: far below a ring
frac=$(grep '"stage": "greedy"' "$dir/three_report.json" | sed 's/.*"fraction_of_ring": \([0-9.]*\).*/\1/')
desc="greedy fetch is $frac of what a ring would move (< 0.1)" check \
	awk -v f="$frac" 'BEGIN { exit !(f != "" && f + 0 > 0 && f + 0 < 0.1) }'
# masks: ranks get their planes like the images' (a moving mask's other planes fetched through the
# transform as the moving image's), and the result is still the single-process one
# usage: mask_case NAME OPTION FILE NP
mask_case() {
	local name=$1 opt=$2 file=$3 np=$4
	"$ffdp" register "${args[@]}" "$opt" "$file" -o "$dir/${name}1" 2>"$dir/${name}1.err" ||
		bad "one process with $opt: $(tail -3 "$dir/${name}1.err")"
	"$mpiexec" --allow-run-as-root --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
		-np "$np" "$ffdp" register "${args[@]}" "$opt" "$file" -o "$dir/${name}$np" >"$dir/${name}$np.err" 2>&1 ||
		bad "mpirun -np $np with $opt: $(tail -5 "$dir/${name}$np.err")"
	desc="with $opt: the same warp over $np ranks" check \
		cmp -s <(zcat "$dir/${name}1_warp.nii.gz") <(zcat "$dir/${name}${np}_warp.nii.gz")
	desc="with $opt: not the unmasked warp (the mask was used)" check \
		test -n "$(cmp <(zcat "$dir/one_warp.nii.gz") <(zcat "$dir/${name}1_warp.nii.gz") 2>&1)"
}
mask_case mask --fixed-mask "$data/atlas_2mm_1000_3.nii.gz" 2  # the fixed image itself as loss weights
mask_case mm --moving-mask "$data/atlas_2mm_1001_3.nii.gz" 3   # the moving image itself
out=$("$mpiexec" --allow-run-as-root --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
	-np 3 "$ffdp" register -q -f "$data/atlas_2mm_1000_3.nii.gz" -m "$dir/missing.nii.gz" -o "$dir/miss" 2>&1)
rc=$?
n=$(grep -c '^ffdp: error' <<<"$out")
desc="mpirun with a missing input fails (status $rc) with one error line ($n: $(grep '^ffdp' <<<"$out"))" check \
	test "$rc" -ne 0 -a "$n" -eq 1
# NAME NP ARGS...: a run in one process and one under mpirun -np NP write
# the same warp, inverse and warped image
same_as_one() {
	local name=$1 np=$2
	shift 2
	"$ffdp" register "$@" -o "$dir/${name}1" 2>"$dir/${name}1.err" || bad "$name, one process: $(tail -3 "$dir/${name}1.err")"
	"$mpiexec" --allow-run-as-root --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
		-np "$np" "$ffdp" register "$@" -o "$dir/${name}$np" >"$dir/${name}$np.err" 2>&1 ||
		bad "$name, mpirun -np $np: $(tail -5 "$dir/${name}$np.err")"
	for f in warp inverse_warp warped; do
		desc="$name on $np ranks: PREFIX_$f.nii.gz the same as one process's" check \
			cmp -s <(zcat "$dir/${name}1_$f.nii.gz") <(zcat "$dir/${name}${np}_$f.nii.gz")
	done
}
# thin slabs: 8 ranks on 12 planes (one or two planes a rank; none at the
# coarse levels for most), SyN with its distributed finish
"$ffdp" synth -q -o "$dir/thin" --size 40x36x12 --spacing 2 --amplitude 3 || bad "synth a 12-plane pair"
same_as_one thin 8 -q -f "$dir/thin_fixed.nii.gz" -m "$dir/thin_moving.nii.gz" --syn
# a 2-D pair: one plane cannot be split in z; rank 0 registers it and every
# rank takes part in writing the files
"$ffdp" synth -q -o "$dir/flat" --size 64x64x1 --amplitude 3 || bad "synth a 2-D pair"
same_as_one flat 3 -q -f "$dir/flat_fixed.nii.gz" -m "$dir/flat_moving.nii.gz" --greedy
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

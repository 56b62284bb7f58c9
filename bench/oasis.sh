#!/bin/bash
# OASIS-TRT-20 accuracy benchmark: register subjects 2..10 (or those given)
# to subject 1, warp the moving labels with the label sampler, and print
# per pair: mean Dice over the labels present in both, mean HD95, folded
# voxels, registration time and peak memory; then the means.
#
# usage: bench/oasis.sh [-b BUILD] [-o OUT] [--backend cpu|cuda] [-- REGISTER OPTIONS] [SUBJECT...]
# e.g.   bench/oasis.sh -- --syn            (FireANTs' anchor: moments, affine, SyN)
#        bench/oasis.sh --backend cuda -- --greedy 2 3
# Reference (../shared/reference/anchors.md, FireANTs with the FFDP kernels, H100):
# 2->1 0.694 (SyN) / 0.674 (greedy); 3->1 0.671 / 0.659.
set -u -o pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
out=${OUT:-$root/build/oasis}
backend=cpu
data=${FFDP_DATA_DIR:-$root/../shared/data}/oasis_trt20
reg_opts=()
subjects=()
while [ $# -gt 0 ]; do
	case "$1" in
	-b) build=$2; shift 2 ;;
	-o) out=$2; shift 2 ;;
	--backend) backend=$2; shift 2 ;;
	--) shift; while [ $# -gt 0 ] && ! [[ "$1" =~ ^[0-9]+$ ]]; do reg_opts+=("$1"); shift; done ;;
	*) subjects+=("$1"); shift ;;
	esac
done
[ ${#subjects[@]} -eq 0 ] && subjects=(2 3 4 5 6 7 8 9 10)
ffdp=$build/ffdp
mkdir -p "$out"
: >"$out/table.txt"
fixed=$data/subject_1/t1weighted_brain.nii.gz
flab=$data/subject_1/labels_dkt31_aseg.nii.gz

printf "%-6s %8s %8s %9s %9s %8s %9s\n" pair dice0 dice hd95_mm folded_% seconds peak_MB
for s in "${subjects[@]}"; do
	mov=$data/subject_$s/t1weighted_brain.nii.gz
	mlab=$data/subject_$s/labels_dkt31_aseg.nii.gz
	p=$out/s${s}
	"$ffdp" register -q -f "$fixed" -m "$mov" -o "$p" --backend "$backend" "${reg_opts[@]}" 2>"$p.err" ||
		{ echo "$s->1 register failed: $(cat "$p.err")"; continue; }
	"$ffdp" apply -q -r "$fixed" -i "$mlab" -o "$p"_labels.nii.gz -t "$p"_warp.nii.gz -t "$p"_affine.txt \
		--interp label 2>>"$p.err" || { echo "$s->1 apply failed"; continue; }
	"$ffdp" eval --labels-fixed "$flab" --labels-moved "$p"_labels.nii.gz --warp "$p"_warp.nii.gz \
		>"$p"_eval.txt 2>>"$p.err" || { echo "$s->1 eval failed"; continue; }
	"$ffdp" eval --labels-fixed "$flab" --labels-moved "$mlab" >"$p"_eval0.txt 2>>"$p.err"
	d0=$(awk '/^mean dice/ { print $3 }' "$p"_eval0.txt)
	d=$(awk '/^mean dice/ { print $3 }' "$p"_eval.txt)
	h=$(awk '/^mean hd95/ { print $3 }' "$p"_eval.txt)
	f=$(sed -n 's/.*(\([0-9.]*\) %).*/\1/p' "$p"_eval.txt | head -1)
	t=$(sed -n 's/.*"seconds": \([0-9.]*\),/\1/p' "$p"_report.json | head -1)
	m=$(sed -n 's/.*"peak_memory_mb": \([0-9]*\),/\1/p' "$p"_report.json)
	printf "%-6s %8s %8s %9s %9s %8s %9s\n" "$s->1" "$d0" "$d" "$h" "$f" "$t" "$m" | tee -a "$out/table.txt"
done
awk '{ d += $3; h += $4; f += $5; t += $6; n++ } END { if (n) printf "%-6s %8s %8.4f %9.3f %9.4f %8.1f\n", "mean", "", d / n, h / n, f / n, t / n }' \
	"$out/table.txt"

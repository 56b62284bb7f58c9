#!/bin/bash
# ffdp register end to end on a small phantom pair: every output is
# written, the transforms it writes reproduce its warped image through
# ffdp apply (ANTs order), the inverse chain brings the fixed image onto
# the moving one, and bad input fails before any work with one clear line.
# usage: test_cli_register.sh FFDP_BINARY DATA_DIR SCRATCH_DIR
ffdp=$1
dir=$3
py=/usr/bin/python3 # Debian's, with python3-nibabel
pass=0
fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if "$@"; then ok "${desc}"; else bad "${desc}"; fi; }

rm -rf "$dir" && mkdir -p "$dir"
d=$dir/demo
"$ffdp" demo -q -o "$d" --size 48,56,48 --spacing 3 >"$dir/demo.log" 2>&1 || bad "demo: $(tail -1 "$dir/demo.log")"

p=$dir/r
if "$ffdp" register -q -f "$d/fixed.nii.gz" -m "$d/moving.nii.gz" -o "$p" --greedy 2>"$dir/reg.err"; then
	ok "register --greedy runs"
else
	bad "register failed: $(cat "$dir/reg.err")"
fi
for s in _warped.nii.gz _affine.txt _warp.nii.gz _inverse_warp.nii.gz _report.json _qc.png; do
	desc="register wrote PREFIX$s" check test -s "$p$s"
done
desc="no temporary files left" check test -z "$(find "$dir" -name '*.tmp-*')"
desc="report lists the greedy stage" check grep -q '"stage": "greedy"' "$p""_report.json"
desc="report: bf16 moments by default" check grep -q '"moments": "bf16",' "$p""_report.json"
desc="report: float images by default" check grep -q '"images": "f32"' "$p""_report.json"

# the storage options: float moments and 16-bit images register as well
"$ffdp" register -q -f "$d/fixed.nii.gz" -m "$d/moving.nii.gz" -o "$dir/s" --greedy --no-inverse \
	--moments f32 --images u16 2>"$dir/s.err" || bad "register --moments f32 --images u16: $(cat "$dir/s.err")"
desc="--moments f32 --images u16: the report says so" check \
	grep -q '"moments": "f32",' "$dir/s_report.json"
desc="  and u16 images" check grep -q '"images": "u16"' "$dir/s_report.json"
desc="report: no winsorising by default" check grep -q '"winsorize": null' "$p""_report.json"

# winsorising (ANTs' spelling, percentiles accepted): recorded in the report
"$ffdp" register -q -f "$d/fixed.nii.gz" -m "$d/moving.nii.gz" -o "$dir/w" --affine \
	--winsorize-image-intensities [0.5,99.5] 2>"$dir/w.err" || bad "register --winsorize-image-intensities: $(cat "$dir/w.err")"
desc="--winsorize-image-intensities [0.5,99.5]: the report has the quantiles 0.005, 0.995" check \
	grep -qF '"winsorize": [0.005, 0.995]' "$dir/w_report.json"
"$ffdp" register -f "$d/fixed.nii.gz" -m "$d/moving.nii.gz" -o "$dir/w2" --winsorize [0.9,0.1] 2>"$dir/err6"
rc=$?
desc="--winsorize [0.9,0.1]: exit $rc == 2, one usage line naming it" check \
	test "$rc" -eq 2 -a "$(wc -l <"$dir/err6")" -eq 1 -a -n "$(grep -- "--winsorize" "$dir/err6")"
"$ffdp" register -f "$d/fixed.nii.gz" -m "$d/moving.nii.gz" -o "$dir/s" --moments f16 2>"$dir/err5"
rc=$?
desc="unknown --moments: exit $rc == 2 and a usage line" check test "$rc" -eq 2 -a -n "$(grep -- --moments "$dir/err5")"

# a moving mask (the moving labels as weights: they are on its grid)
"$ffdp" register -q -f "$d/fixed.nii.gz" -m "$d/moving.nii.gz" -o "$dir/mm" --affine \
	--moving-mask "$d/moving_labels.nii.gz" 2>"$dir/mm.err" || bad "register --moving-mask: $(cat "$dir/mm.err")"
desc="--moving-mask: the registration wrote its affine" check test -s "$dir/mm_affine.txt"
"$ffdp" register -f "$d/fixed.nii.gz" -m "$d/moving.nii.gz" -o "$dir/mm2" --moving-mask "$dir/none.nii.gz" \
	2>"$dir/err8"
rc=$?
desc="--moving-mask missing file: exit $rc != 0, one line naming it" check \
	test "$rc" -ne 0 -a "$(wc -l <"$dir/err8")" -eq 1 -a -n "$(grep -F "$dir/none.nii.gz" "$dir/err8")"

# antsRegistration's names: the same registration (the same bits on the CPU), the affine as
# ITK's binary .mat, found by a script written for ANTs
"$ffdp" register -q -f "$d/fixed.nii.gz" -m "$d/moving.nii.gz" -o "$dir/ants_" --greedy \
	--output-names ants 2>"$dir/an.err" || bad "register --output-names ants: $(cat "$dir/an.err")"
for s in Warped.nii.gz 0GenericAffine.mat 1Warp.nii.gz 1InverseWarp.nii.gz report.json qc.png; do
	desc="--output-names ants wrote PREFIX$s" check test -s "$dir/ants_$s"
done
desc="--output-names ants: the warp is the default run's" check \
	cmp -s <(gzip -dc "$dir/ants_1Warp.nii.gz") <(gzip -dc "$p""_warp.nii.gz")
"$ffdp" apply -q -r "$d/fixed.nii.gz" -i "$d/moving.nii.gz" -o "$dir/ants_applied.nii.gz" \
	-t "$dir/ants_1Warp.nii.gz" -t "$dir/ants_0GenericAffine.mat" 2>"$dir/an2.err" || bad "apply .mat: $(cat "$dir/an2.err")"
"$ffdp" apply -q -r "$d/fixed.nii.gz" -i "$d/moving.nii.gz" -o "$dir/txt_applied.nii.gz" \
	-t "$p""_warp.nii.gz" -t "$p""_affine.txt" 2>"$dir/an3.err" || bad "apply .txt: $(cat "$dir/an3.err")"
desc="  and -t 1Warp -t 0GenericAffine.mat resamples as -t _warp -t _affine.txt" check \
	cmp -s <(gzip -dc "$dir/ants_applied.nii.gz") <(gzip -dc "$dir/txt_applied.nii.gz")
"$ffdp" register -f "$d/fixed.nii.gz" -m "$d/moving.nii.gz" -o "$dir/x" --output-names itk 2>"$dir/err7"
rc=$?
desc="--output-names itk: exit $rc == 2 and a usage line" check test "$rc" -eq 2 -a -n "$(grep -- --output-names "$dir/err7")"

# the written transforms, applied in ANTs order, reproduce the warped image
"$ffdp" apply -q -r "$d/fixed.nii.gz" -i "$d/moving.nii.gz" -o "$dir/applied.nii.gz" \
	-t "$p""_warp.nii.gz" -t "$p""_affine.txt" 2>"$dir/apply.err" || bad "apply: $(cat "$dir/apply.err")"
rel=$("$py" -c '
import sys, nibabel as nib, numpy as np
a = nib.load(sys.argv[1]).get_fdata(); b = nib.load(sys.argv[2]).get_fdata()
print(np.abs(a - b).max() / (b.max() - b.min()))' "$dir/applied.nii.gz" "$p""_warped.nii.gz" 2>&1)
desc="apply -t warp -t affine reproduces PREFIX_warped (max diff / range = $rel < 1e-4)" check \
	awk -v r="$rel" 'BEGIN { exit !(r + 0 < 1e-4 && r != "") }'

# the inverse chain maps the fixed image onto the moving one: its NCC with
# the moving image beats the unregistered pair's
"$ffdp" apply -q -r "$d/moving.nii.gz" -i "$d/fixed.nii.gz" -o "$dir/inverse.nii.gz" \
	-t "[$p""_affine.txt,1]" -t "$p""_inverse_warp.nii.gz" 2>"$dir/inv.err" || bad "inverse apply: $(cat "$dir/inv.err")"
ncc() { "$ffdp" eval --labels-fixed "$d/fixed_labels.nii.gz" --labels-moved "$d/fixed_labels.nii.gz" \
	--fixed-image "$1" --moved-image "$2" 2>/dev/null | awk '/^ncc / { print $2 }'; }
n0=$(ncc "$d/moving.nii.gz" "$d/fixed.nii.gz")
n1=$(ncc "$d/moving.nii.gz" "$dir/inverse.nii.gz")
desc="inverse chain: NCC with the moving image $n1 > $n0 unregistered" check \
	awk -v a="$n1" -v b="$n0" 'BEGIN { exit !(a + 0 > b + 0 && a != "") }'

# bad input: one line naming the file, non-zero exit, nothing written
"$ffdp" register -f "$dir/missing.nii.gz" -m "$d/moving.nii.gz" -o "$dir/x" 2>"$dir/err1"
rc=$?
desc="missing fixed image: exit $rc != 0, one line naming it" check \
	test "$rc" -ne 0 -a "$(wc -l <"$dir/err1")" -eq 1 -a -n "$(grep missing.nii.gz "$dir/err1")"
"$ffdp" register -f "$d/fixed.nii.gz" -m "$d/moving.nii.gz" -o /proc/nonexistent/x 2>"$dir/err2"
rc=$?
desc="unwritable output prefix: exit $rc != 0 before registering, one line" check \
	test "$rc" -ne 0 -a "$(wc -l <"$dir/err2")" -eq 1
desc="no outputs for the failed runs" check test -z "$(ls "$dir" | grep '^x_')"

# --backend survives a later preset: cuda either runs on a GPU (the report
# says so) or fails naming CUDA; it never falls back to the CPU silently
"$ffdp" register -q -f "$d/fixed.nii.gz" -m "$d/moving.nii.gz" -o "$dir/b" --backend cuda --greedy \
	--no-inverse 2>"$dir/err3"
rc=$?
if [ "$rc" -eq 0 ]; then
	desc="--backend cuda then --greedy ran on CUDA" check grep -q '"backend": "cuda"' "$dir/b_report.json"
else
	desc="--backend cuda then --greedy, no GPU: exit $rc, the error names CUDA" check grep -q CUDA "$dir/err3"
fi
"$ffdp" register -f "$d/fixed.nii.gz" -m "$d/moving.nii.gz" -o "$dir/b" --backend gpu 2>"$dir/err4"
rc=$?
desc="unknown --backend: exit $rc == 2 and a usage line" check test "$rc" -eq 2 -a -n "$(grep -- --backend "$dir/err4")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

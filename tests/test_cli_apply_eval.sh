#!/bin/bash
# ffdp apply and ffdp eval end to end on the demo phantom: the true warp
# carries the moving labels onto the fixed ones (moving(x + u(x)) = fixed(x),
# so '-t true_warp.nii.gz' alone is the right chain); an affine followed by
# its inverse is the identity; bad input gives one clear line and exit != 0.
# usage: test_cli_apply_eval.sh FFDP_BINARY DATA_DIR SCRATCH_DIR
ffdp=$1
dir=$3
pass=0
fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
# ge A B: A >= B for decimals
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }
mean_dice() { awk '/^mean dice/ { print $3 }' "$1"; }

rm -rf "$dir" && mkdir -p "$dir"
d=$dir/demo
if "$ffdp" demo -q -o "$d" --size 64,72,64 --spacing 2.25 >"$dir/demo.log" 2>&1; then
	ok "demo wrote the phantom pair, labels and true warp"
else
	bad "demo failed: $(tail -1 "$dir/demo.log")"
fi

# the true warp, label interpolation
"$ffdp" apply -q -r "$d/fixed.nii.gz" -i "$d/moving_labels.nii.gz" -o "$dir/warped_labels.nii.gz" \
	-t "$d/true_warp.nii.gz" --interp label 2>"$dir/err" &&
	ok "apply -t true_warp.nii.gz --interp label runs" || bad "apply with the true warp: $(cat "$dir/err")"
"$ffdp" eval --labels-fixed "$d/fixed_labels.nii.gz" --labels-moved "$dir/warped_labels.nii.gz" \
	--json "$dir/eval.json" >"$dir/with.txt" 2>"$dir/err" && ok "eval with the true warp runs" ||
	bad "eval: $(cat "$dir/err")"
with=$(mean_dice "$dir/with.txt")
ge "$with" 0.95 && ok "mean Dice after the true warp: $with >= 0.95" || bad "mean Dice after the true warp: '$with' < 0.95"
nlab=$(awk '$1 ~ /^[0-9]+$/ { n++ } END { print n + 0 }' "$dir/with.txt")
[ "$nlab" -ge 5 ] && ok "the table lists $nlab labels" || bad "the table lists $nlab labels"
grep -q '"mean_dice"' "$dir/eval.json" 2>/dev/null && grep -q '"hd95_mm"' "$dir/eval.json" &&
	ok "--json wrote mean_dice and per-label hd95_mm" || bad "--json output incomplete"
[ -z "$(ls "$dir" | grep -F .tmp-)" ] && ok "no temporary files left" || bad "temporary files left in $dir"

# without the warp the labels disagree more
"$ffdp" eval --labels-fixed "$d/fixed_labels.nii.gz" --labels-moved "$d/moving_labels.nii.gz" \
	>"$dir/without.txt" 2>"$dir/err" || bad "eval without the warp: $(cat "$dir/err")"
without=$(mean_dice "$dir/without.txt")
[ -n "$without" ] && ge "$with" "$without" && ! ge "$without" "$with" &&
	ok "mean Dice without the warp $without < with it $with" || bad "mean Dice without the warp '$without' vs '$with'"
hd_with=$(awk '/^mean hd95/ { print $3 }' "$dir/with.txt")
hd_without=$(awk '/^mean hd95/ { print $3 }' "$dir/without.txt")
[ -n "$hd_with" ] && ge "$hd_without" "$hd_with" && ok "mean HD95 $hd_with mm with the warp <= $hd_without mm without" ||
	bad "mean HD95 '$hd_with' with the warp vs '$hd_without' without"

# the true warp is a diffeomorphism; intensities agree better after it
"$ffdp" apply -q -r "$d/fixed.nii.gz" -i "$d/moving.nii.gz" -o "$dir/warped.nii.gz" -t "$d/true_warp.nii.gz" \
	2>"$dir/err" || bad "apply (linear): $(cat "$dir/err")"
"$ffdp" eval --warp "$d/true_warp.nii.gz" --fixed-image "$d/fixed.nii.gz" --moved-image "$dir/warped.nii.gz" \
	>"$dir/warp.txt" 2>"$dir/err" || bad "eval --warp: $(cat "$dir/err")"
grep -q '^folding: 0 of' "$dir/warp.txt" && ok "true warp: $(grep '^folding' "$dir/warp.txt")" ||
	bad "true warp folds: $(grep '^folding' "$dir/warp.txt")"
# the determinant map: its min/max are the table's (read back with nibabel)
"$ffdp" eval --warp "$d/true_warp.nii.gz" --jacobian "$dir/jac.nii.gz" >"$dir/jac.txt" 2>"$dir/err" ||
	bad "eval --jacobian: $(cat "$dir/err")"
mm=$(/usr/bin/python3 -c '
import sys, nibabel as nib, numpy as np
j = np.asarray(nib.load(sys.argv[1]).dataobj, dtype=np.float64)
print("%.4f %.4f %d" % (j.min(), j.max(), j.size))' "$dir/jac.nii.gz" 2>&1)
want=$(awk '/^det J min/ { printf "%.4f %.4f", $4, $8 }' "$dir/jac.txt")
[ -n "$want" ] && [ "${mm% *}" = "$want" ] && ok "--jacobian: the map's min and max ($mm) are the table's ($want)" ||
	bad "--jacobian: map '$mm' against the table '$want'"
"$ffdp" eval --fixed-image "$d/fixed.nii.gz" --moved-image "$d/moving.nii.gz" >"$dir/sim0.txt" 2>"$dir/err" ||
	bad "eval images: $(cat "$dir/err")"
n1=$(awk '/^ncc/ { print $2 }' "$dir/warp.txt")
n0=$(awk '/^ncc/ { print $2 }' "$dir/sim0.txt")
[ -n "$n1" ] && ge "$n1" "$n0" && ! ge "$n0" "$n1" && ok "global NCC $n0 before, $n1 after the warp" ||
	bad "global NCC '$n0' before vs '$n1' after"
l1=$(awk '/^lncc2/ { print $NF }' "$dir/warp.txt")
l0=$(awk '/^lncc2/ { print $NF }' "$dir/sim0.txt")
[ -n "$l1" ] && ge "$l1" "$l0" && ok "lncc2 (squared) $l0 before, $l1 after the warp" || bad "lncc2 '$l0' vs '$l1'"

# an affine then its inverse: the identity (translation by whole voxels, so exact)
cat >"$dir/shift.txt" <<EOF
#Insight Transform File V1.0
#Transform 0
Transform: AffineTransform_double_3_3
Parameters: 1 0 0 0 1 0 0 0 1 4.5 0 -2.25
FixedParameters: 0 0 0
EOF
"$ffdp" apply -q -r "$d/fixed.nii.gz" -i "$d/fixed_labels.nii.gz" -o "$dir/roundtrip.nii.gz" \
	-t "$dir/shift.txt" -t "[$dir/shift.txt,1]" --interp nearest 2>"$dir/err" || bad "apply [A, [A,1]]: $(cat "$dir/err")"
"$ffdp" apply -q -r "$d/fixed.nii.gz" -i "$d/fixed_labels.nii.gz" -o "$dir/shifted.nii.gz" \
	-t "$dir/shift.txt" --interp nearest 2>"$dir/err" || bad "apply [A]: $(cat "$dir/err")"
"$ffdp" eval --labels-fixed "$d/fixed_labels.nii.gz" --labels-moved "$dir/roundtrip.nii.gz" >"$dir/rt.txt" 2>&1
"$ffdp" eval --labels-fixed "$d/fixed_labels.nii.gz" --labels-moved "$dir/shifted.nii.gz" >"$dir/sh.txt" 2>&1
rt=$(mean_dice "$dir/rt.txt")
sh=$(mean_dice "$dir/sh.txt")
[ "$rt" = "1.0000" ] && [ -n "$sh" ] && ! ge "$sh" 0.999 && ok "-t A -t [A,1] is the identity (Dice $rt; A alone $sh)" ||
	bad "-t A -t [A,1]: Dice '$rt', A alone '$sh'"

# the same shift as ANTs' binary form (a MATLAB Level 4 file, as antsRegistration's
# 0GenericAffine.mat): the 12 parameters and the centre, little-endian doubles
d1='\x00\x00\x00\x00\x00\x00\xf0\x3f' d0='\x00\x00\x00\x00\x00\x00\x00\x00'
printf "\x00\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x1b\x00\x00\x00AffineTransform_double_3_3\x00$d1$d0$d0$d0$d1$d0$d0$d0$d1\x00\x00\x00\x00\x00\x00\x12\x40$d0\x00\x00\x00\x00\x00\x00\x02\xc0\x00\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x06\x00\x00\x00fixed\x00$d0$d0$d0" \
	>"$dir/shift0GenericAffine.mat"
"$ffdp" apply -q -r "$d/fixed.nii.gz" -i "$d/fixed_labels.nii.gz" -o "$dir/shifted_mat.nii.gz" \
	-t "$dir/shift0GenericAffine.mat" --interp nearest 2>"$dir/err" || bad "apply [A.mat]: $(cat "$dir/err")"
[ "$(wc -c <"$dir/shift0GenericAffine.mat")" -eq 193 ] &&
	cmp -s <(gzip -dc "$dir/shifted.nii.gz") <(gzip -dc "$dir/shifted_mat.nii.gz") &&
	ok "-t A.mat (ITK's binary form) resamples as -t A.txt" || bad "-t A.mat differs from -t A.txt"

# ffdp convert: the .mat as text, and an inverse that undoes the shift
"$ffdp" convert -q "$dir/shift0GenericAffine.mat" "$dir/conv.txt" 2>"$dir/err" || bad "convert: $(cat "$dir/err")"
grep -qF 'Parameters: 1 0 0 0 1 0 0 0 1 4.5 0 -2.25' "$dir/conv.txt" && ok "convert .mat -> .txt: the same parameters" ||
	bad "convert .mat -> .txt: $(grep Parameters "$dir/conv.txt")"
"$ffdp" convert -q "$dir/shift.txt" "$dir/inv.mat" --invert 2>"$dir/err" || bad "convert --invert: $(cat "$dir/err")"
"$ffdp" apply -q -r "$d/fixed.nii.gz" -i "$d/fixed_labels.nii.gz" -o "$dir/roundtrip2.nii.gz" \
	-t "$dir/shift.txt" -t "$dir/inv.mat" --interp nearest 2>"$dir/err" || bad "apply [A, A^-1.mat]: $(cat "$dir/err")"
cmp -s <(gzip -dc "$dir/roundtrip.nii.gz") <(gzip -dc "$dir/roundtrip2.nii.gz") &&
	ok "convert --invert: -t A -t A^-1.mat resamples as -t A -t [A,1]" || bad "convert --invert: not [A,1]'s result"

# bad input: exit != 0, exactly one stderr line naming the culprit
expect_one_line() {
	local what=$1 needle=$2
	shift 2
	"$@" >"$dir/stdout" 2>"$dir/stderr"
	local rc=$? lines
	lines=$(wc -l <"$dir/stderr")
	[ $rc -ne 0 ] && [ "$lines" -eq 1 ] && grep -qF -- "$needle" "$dir/stderr" &&
		ok "$what: exit $rc, one line: $(cat "$dir/stderr")" ||
		bad "$what: exit $rc, $lines lines: $(cat "$dir/stderr")"
}
expect_one_line "missing transform" "$dir/nope.txt" "$ffdp" apply -r "$d/fixed.nii.gz" -i "$d/moving.nii.gz" \
	-o "$dir/x.nii.gz" -t "$dir/nope.txt"
expect_one_line "convert a missing transform" "$dir/nope.mat" "$ffdp" convert "$dir/nope.mat" "$dir/out.txt"
expect_one_line "missing warp" "$dir/nope.nii.gz" "$ffdp" apply -r "$d/fixed.nii.gz" -i "$d/moving.nii.gz" \
	-o "$dir/x.nii.gz" -t "$dir/nope.nii.gz"
expect_one_line "[field,1]" "cannot be inverted" "$ffdp" apply -r "$d/fixed.nii.gz" -i "$d/moving.nii.gz" \
	-o "$dir/x.nii.gz" -t "[$d/true_warp.nii.gz,1]"
expect_one_line "unwritable output" "/proc/nonexistent/x.nii.gz" "$ffdp" apply -r "$d/fixed.nii.gz" \
	-i "$d/moving.nii.gz" -o /proc/nonexistent/x.nii.gz -t "$d/true_warp.nii.gz"
expect_one_line "eval of an intensity image as labels" "$d/moving.nii.gz" "$ffdp" eval \
	--labels-fixed "$d/fixed_labels.nii.gz" --labels-moved "$d/moving.nii.gz"
[ ! -e "$dir/x.nii.gz" ] && ok "no output written on failure" || bad "an output was written despite the failure"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ] && [ $pass -gt 0 ]

#!/bin/bash
# `ffdp info` on every image of ../shared/data, checked against the facts in
# /work/shared/data/README.md (size, voxel size to the README's precision,
# nibabel axis codes, datatype where the README names it).
# usage: test_info_shared_data.sh FFDP_BINARY DATA_DIR SCRATCH_DIR
ffdp=$1
data=$2
# Reading is gzip-bound (serial); extra threads only contend with other tests.
export OMP_NUM_THREADS=1
pass=0
fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

# README facts: "size voxel orientation dtype" (dtype "-" when the README gives none;
# voxel "1.0" means isotropic, to one decimal; "1.33x1x1" per axis).
declare -A want
for n in 1 2 3 4 5 6 7 8 9 10 11 12; do
	want[oasis_trt20/subject_$n/t1weighted_brain.nii.gz]="256x256x160 1.0 ASL int16"
	want[oasis_trt20/subject_$n/labels_dkt31_aseg.nii.gz]="256x256x160 1.0 ASL float32"
done
want[fireants_tutorial_mal35_2mm/atlas_2mm_1000_3.nii.gz]="96x116x128 2 RAS float32"
want[fireants_tutorial_mal35_2mm/atlas_2mm_1001_3.nii.gz]="96x116x128 2 RAS float32"
want[cfireants_validate/small/MNI152_T1_2mm.nii.gz]="91x109x91 2 LAS int16"
want[cfireants_validate/small/T1_head_2mm.nii.gz]="83x105x80 2 RAS float32"
want[cfireants_validate/medium/MNI152_T1_1mm_brain.nii.gz]="182x218x182 1 LAS int16"
want[cfireants_validate/medium/t1_brain.nii.gz]="128x181x175 1.33x1x1 LAS float32"
for n in 1 2 3 4 5; do
	want[synthseg_labelmaps/training_seg_0$n.nii.gz]="256x256x256 1 LIA -"
done
# "identity affine, 1 mm"; the l2r2019 subject is "in the same ... space".
for f in test_scan_vol test_scan_seg l2r2019_subject_1_vol l2r2019_subject_1_seg; do
	want[voxelmorph_scan/$f.nii.gz]="160x192x224 1 RAS uint8"
done

# |got - want| <= half a unit in the last decimal the README gives.
close_enough() {
	awk -v g="$1" -v w="$2" 'BEGIN {
		d = index(w, ".") ? length(w) - index(w, ".") : 0
		tol = 0.5 * 10 ^ (-d) + 1e-9
		diff = g - w; if (diff < 0) diff = -diff
		exit !(diff <= tol) }'
}

check_file() {
	local rel=$1 spec=${want[$1]}
	if [ -z "$spec" ]; then
		bad "$rel: no README expectation for this file"
		return
	fi
	read -r size vox orient dtype <<<"$spec"
	local out rc
	out=$("$ffdp" info "$data/$rel" 2>&1)
	rc=$?
	if [ $rc -ne 0 ]; then
		bad "$rel: ffdp info exited $rc: $out"
		return
	fi
	local got_size got_vox got_orient got_dtype
	got_size=$(sed -n 's/^  size: *//p' <<<"$out" | tr -d ' ')
	got_vox=$(sed -n 's/^  voxel size: *\(.*\) mm$/\1/p' <<<"$out" | tr -d ' ')
	got_orient=$(sed -n 's/^  orientation: *//p' <<<"$out")
	got_dtype=$(sed -n 's/^  datatype: *\([a-z0-9]*\).*/\1/p' <<<"$out")
	[ "$got_size" = "$size" ] && ok "$rel: size $got_size" || bad "$rel: size '$got_size', README $size"
	local wv=(${vox//x/ }) gv=(${got_vox//x/ }) good=1
	[ ${#wv[@]} -eq 1 ] && wv=("${wv[0]}" "${wv[0]}" "${wv[0]}")
	[ ${#gv[@]} -eq 3 ] || good=0
	for i in 0 1 2; do
		[ $good -eq 1 ] && ! close_enough "${gv[$i]}" "${wv[$i]}" && good=0
	done
	[ $good -eq 1 ] && ok "$rel: voxel $got_vox mm (README $vox)" || bad "$rel: voxel '$got_vox', README $vox"
	[ "$got_orient" = "$orient" ] && ok "$rel: orientation $got_orient" ||
		bad "$rel: orientation '$got_orient', README $orient"
	if [ "$dtype" != "-" ]; then
		[ "$got_dtype" = "$dtype" ] && ok "$rel: datatype $got_dtype" || bad "$rel: datatype '$got_dtype', README $dtype"
	fi
}

if [ ! -d "$data" ]; then
	bad "data directory $data is missing"
else
	nfiles=0
	for path in "$data"/oasis_trt20/subject_*/t1weighted_brain.nii.gz \
		"$data"/oasis_trt20/subject_*/labels_dkt31_aseg.nii.gz \
		"$data"/fireants_tutorial_mal35_2mm/* "$data"/cfireants_validate/small/* \
		"$data"/cfireants_validate/medium/* "$data"/synthseg_labelmaps/* "$data"/voxelmorph_scan/*.nii.gz; do
		check_file "${path#$data/}"
		nfiles=$((nfiles + 1))
	done
	[ $nfiles -eq ${#want[@]} ] && ok "checked $nfiles files, as many as the README lists" ||
		bad "checked $nfiles files, the README lists ${#want[@]}"
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ] && [ $pass -gt 0 ]

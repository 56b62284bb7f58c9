#!/usr/bin/env bash
# Prepares what the lent GPU machine lacks (it reaches no package registry
# and has no ../shared): nifti_clib's headers and libraries in .devicedeps/,
# and the registration pairs in .devicedata/.  Both are git-ignored; pass
# them to the device tool as `carry: [".devicedeps", ".devicedata"]`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
rm -rf .devicedeps && mkdir -p .devicedeps/include .devicedeps/lib
cp -r /usr/include/nifti .devicedeps/include/
for l in libnifti2.so libnifti2.so.2 libznz.so libznz.so.3; do
	cp -L "/usr/lib/x86_64-linux-gnu/$l" .devicedeps/lib/ # real files: the tool skips links
done
data=${FFDP_DATA_DIR:-../shared/data}
rm -rf .devicedata && mkdir -p .devicedata/cfireants_validate .devicedata/oasis_trt20
cp -r "$data/cfireants_validate/medium" .devicedata/cfireants_validate/
mkdir -p .devicedata/fireants_tutorial_mal35_2mm
cp "$data/fireants_tutorial_mal35_2mm/"atlas_2mm_100[01]_3.nii.gz .devicedata/fireants_tutorial_mal35_2mm/
for s in 1 2 3 4 5 6 7 8 9 10; do
	mkdir -p ".devicedata/oasis_trt20/subject_$s"
	cp "$data/oasis_trt20/subject_$s/"*.nii.gz ".devicedata/oasis_trt20/subject_$s/"
done
du -sh .devicedeps .devicedata

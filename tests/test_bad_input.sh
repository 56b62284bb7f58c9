#!/bin/bash
# Bad input to the CLI: each case exits non-zero with exactly one stderr
# line naming the file, and no input is modified.
# usage: test_bad_input.sh FFDP_BINARY DATA_DIR SCRATCH_DIR
ffdp=$1
data=$2
dir=$3
pass=0
fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

rm -rf "$dir" && mkdir -p "$dir"
real=$data/fireants_tutorial_mal35_2mm/atlas_2mm_1000_3.nii.gz
: >"$dir/empty.nii"
head -c 100000 "$real" >"$dir/truncated.nii.gz"
for i in $(seq 40); do echo "plain text, line $i, not an image"; done >"$dir/text.nii"
mkdir -p "$dir/folder.nii"
inputs=("$dir/empty.nii" "$dir/truncated.nii.gz" "$dir/text.nii" "$real")
before=$(sha256sum "${inputs[@]}")

# expect_one_line WHAT NEEDLE CMD...: non-zero exit, one stderr line containing NEEDLE.
expect_one_line() {
	local what=$1 needle=$2
	shift 2
	"$@" >"$dir/stdout" 2>"$dir/stderr"
	local rc=$? lines
	lines=$(wc -l <"$dir/stderr")
	[ $rc -ne 0 ] && ok "$what: exit status $rc" || bad "$what: exit status 0"
	[ "$lines" -eq 1 ] && ok "$what: one stderr line: $(cat "$dir/stderr")" ||
		bad "$what: $lines stderr lines: $(cat "$dir/stderr")"
	grep -qF -- "$needle" "$dir/stderr" && ok "$what: the message names $needle" ||
		bad "$what: the message does not name $needle"
}

expect_one_line "missing file" "$dir/missing.nii" "$ffdp" info "$dir/missing.nii"
expect_one_line "zero-byte .nii" "$dir/empty.nii" "$ffdp" info "$dir/empty.nii"
expect_one_line "truncated .nii.gz" "$dir/truncated.nii.gz" "$ffdp" info "$dir/truncated.nii.gz"
expect_one_line "text file named .nii" "$dir/text.nii" "$ffdp" info "$dir/text.nii"
expect_one_line "directory named .nii" "$dir/folder.nii" "$ffdp" info "$dir/folder.nii"
"$ffdp" info "$dir/truncated.nii.gz" 2>&1 | grep -q "truncated" && ok "truncated file: the message says truncated" ||
	bad "truncated file: the message does not say truncated"

after=$(sha256sum "${inputs[@]}")
[ "$before" = "$after" ] && ok "inputs unchanged (sha256)" || bad "an input changed"

# demo into an impossible directory (the phantom may not exist yet in this
# tree; the output directory is checked first either way).
expect_one_line "demo -o /proc/nonexistent/x" "/proc/nonexistent/x" "$ffdp" demo -o /proc/nonexistent/x
[ -z "$(ls -A "$dir" | grep -F .tmp-)" ] && ok "no temporary files left in $dir" || bad "temporary files left in $dir"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ] && [ $pass -gt 0 ]

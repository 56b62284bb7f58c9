#!/bin/bash
# ffdp synth: the slab-by-slab pair is the in-memory phantom of 'ffdp demo'
# (decompressed bytes equal), 3 MPI ranks write the same files as one
# process, peak memory does not grow with the volume (O(slab)), and bad
# input gives one message and no temporaries.
# usage: test_cli_synth.sh FFDP_BINARY DATA_DIR SCRATCH_DIR
ffdp=$1
dir=$3
pass=0
fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
same() { cmp -s <(gzip -dc "$1") <(gzip -dc "$2"); }

rm -rf "$dir" && mkdir -p "$dir"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
outs="fixed moving fixed_labels moving_labels true_warp"

"$ffdp" demo -q -o "$dir/demo" --size 40,48,36 >/dev/null 2>&1 && ok "demo 40x48x36 (the in-memory phantom)" ||
	bad "demo failed"
"$ffdp" synth -q -o "$dir/s" --size 40x48x36 --spacing 1.5 --labels --truth --slab 5 >"$dir/out" 2>&1 &&
	ok "synth 40x48x36 in slabs of 5 planes: $(cat "$dir/out")" || bad "synth failed: $(cat "$dir/out")"
for f in $outs; do
	same "$dir/s_$f.nii.gz" "$dir/demo/$f.nii.gz" && ok "s_$f.nii.gz = demo's $f.nii.gz (decompressed bytes)" ||
		bad "s_$f.nii.gz differs from demo's $f.nii.gz"
done

if "$ffdp" --version | grep -q "mpi: *yes" && command -v mpirun >/dev/null; then
	OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe --mca btl self,vader \
		--mca btl_vader_single_copy_mechanism none -np 3 \
		"$ffdp" synth -q -o "$dir/p" --size 40x48x36 --spacing 1.5 --labels --truth --slab 4 >"$dir/out" 2>&1 &&
		ok "3 ranks: $(head -1 "$dir/out")" || bad "3 ranks failed: $(cat "$dir/out")"
	for f in $outs; do
		same "$dir/p_$f.nii.gz" "$dir/s_$f.nii.gz" && ok "3 ranks: p_$f.nii.gz = one process's" ||
			bad "3 ranks: p_$f.nii.gz differs"
	done
else
	ok "built without MPI: no mpirun run"
fi

# O(slab): 4x the planes (52 MB more of volumes) must not raise the peak.
peak() { sed -n 's/.*peak memory \([0-9]*\) MiB.*/\1/p' "$dir/out"; }
"$ffdp" synth -q -o "$dir/m1" --size 128x128x200 --slab 4 >"$dir/out" 2>&1
small=$(peak)
"$ffdp" synth -q -o "$dir/m4" --size 128x128x800 --slab 4 >"$dir/out" 2>&1
large=$(peak)
whole=$((128 * 128 * 800 * 4 * 2 / 1048576))
[ -n "$small" ] && [ -n "$large" ] && [ $((large - small)) -lt $((whole / 10)) ] &&
	ok "peak memory $small MiB at 128x128x200, $large MiB at 128x128x800 (its two volumes: $whole MiB)" ||
	bad "peak memory $small MiB -> $large MiB grows with the volume ($whole MiB)"
rm -f "$dir"/m1_* "$dir"/m4_*

# Bad input: one stderr line, non-zero exit, nothing left behind.
"$ffdp" synth -q -o "$dir/x" --size 40x48 >"$dir/out" 2>&1
rc=$?
[ $rc -eq 2 ] && [ "$(wc -l <"$dir/out")" -eq 1 ] && ok "bad --size: usage error: $(cat "$dir/out")" ||
	bad "bad --size: rc $rc: $(cat "$dir/out")"
"$ffdp" synth -q -o "$dir/nodir/x" --size 40x48x36 --spacing 1.5 >"$dir/out" 2>&1
rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$dir/out")" -eq 1 ] && grep -q "nodir" "$dir/out" &&
	ok "missing directory: $(cat "$dir/out")" || bad "missing directory: rc $rc: $(cat "$dir/out")"
left=$(find "$dir" -name '*.tmp-*' | wc -l)
[ "$left" -eq 0 ] && ok "no temporaries left" || bad "$left temporaries left"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]

#!/bin/bash
# bench/gpu/compare_torch.py on hand-written logs (bench/gpu/testdata): the
# table matches the checked one (ratios, failed and skipped rows, names with
# digits, a size only PyTorch ran), a missing log gives "not run" rows, and
# no rows at all or bad usage exit non-zero.
# usage: test_compare_torch.sh FFDP_BINARY DATA_DIR SCRATCH_DIR
dir=$3
root=$(cd "$(dirname "$0")/.." && pwd)
td=$root/bench/gpu/testdata
cmp_py=$root/bench/gpu/compare_torch.py
pass=0
fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

rm -rf "$dir" && mkdir -p "$dir"
if python3 "$cmp_py" "$td/bench_ops_gpu_fake.log" "$td/torch_ops_fake.log" >"$dir/table.md" &&
	diff -u "$td/compare_expected.md" "$dir/table.md"; then
	ok "table equals compare_expected.md"
else
	bad "table differs from compare_expected.md"
fi
grep -q '^| mi 32 fwd+bwd | 256 | 1.280 | failed: out of memory | - |' "$dir/table.md" &&
	ok "mi row: name with digits, torch failure carried" || bad "mi 256 row"
grep -q '^| lncc k7 exact fwd+bwd | 256 | 2.743 | 40.800 | 14.9× | 0.0 | 1280.0 |' "$dir/table.md" &&
	ok "ratio and peaks" || bad "lncc 256 row"

python3 "$cmp_py" "$td/bench_ops_gpu_fake.log" "$dir/absent.log" >"$dir/only_ffdp.md" 2>"$dir/err.txt"
rows=$(grep -c '| not run | - |' "$dir/only_ffdp.md")
[ "$rows" -eq 18 ] && grep -q absent.log "$dir/err.txt" && ok "missing torch log: 18 rows 'not run'" ||
	bad "missing torch log: $rows rows"
: >"$dir/empty.log"
python3 "$cmp_py" "$dir/empty.log" "$dir/empty.log" >/dev/null 2>&1 && bad "no rows: exit 0" || ok "no rows: exit 1"
python3 "$cmp_py" "$dir/empty.log" >/dev/null 2>&1; [ $? -eq 2 ] && ok "usage: exit 2" || bad "usage"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

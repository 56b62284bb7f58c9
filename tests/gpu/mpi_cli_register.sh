#!/bin/bash
# ffdp register --backend cuda under mpirun (device machine): one rank (NCCL
# transport) writes the single-process GPU run's files bit for bit; two
# ranks sharing the GPU (staged through host memory) agree with it to
# rounding (warp within 1e-3 mm where the warp is ~mm; the same NCC to 3
# decimals).  Pair: the FireANTs tutorial's 2 mm OASIS heads.
# usage: mpi_cli_register.sh FFDP_BINARY DATA_DIR SCRATCH_DIR MPIEXEC
ffdp=$1
data=$2/fireants_tutorial_mal35_2mm
dir=$3
mpiexec=$4
pass=0
fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if "$@"; then ok "${desc}"; else bad "${desc}"; fi; }
mpi() { "$mpiexec" --allow-run-as-root --oversubscribe -np "$@"; }

rm -rf "$dir" && mkdir -p "$dir"
args=(-q --backend cuda -f "$data/atlas_2mm_1000_3.nii.gz" -m "$data/atlas_2mm_1001_3.nii.gz" --greedy)
"$ffdp" register "${args[@]}" -o "$dir/one" 2>"$dir/one.err" && ok "one process on the GPU" ||
	bad "one process: $(tail -3 "$dir/one.err")"
mpi 1 "$ffdp" register "${args[@]}" -o "$dir/r1" >"$dir/r1.err" 2>&1 && ok "mpirun -np 1 on the GPU" ||
	bad "mpirun -np 1: $(tail -5 "$dir/r1.err")"
mpi 2 "$ffdp" register "${args[@]}" -o "$dir/r2" >"$dir/r2.err" 2>&1 && ok "mpirun -np 2 on one GPU" ||
	bad "mpirun -np 2: $(tail -5 "$dir/r2.err")"
desc="one rank moves planes with NCCL" check grep -q '"mpi_transport": "nccl"' "$dir/r1_report.json"
desc="two ranks on one GPU stage through host memory" check grep -q '"mpi_transport": "staged"' "$dir/r2_report.json"
for f in warp inverse_warp warped; do
	desc="one rank: PREFIX_$f.nii.gz equals the single-process GPU run's" check \
		cmp -s <(zcat "$dir/one_$f.nii.gz") <(zcat "$dir/r1_$f.nii.gz")
done
# two ranks: the warps agree to rounding
diff=$(python3 - "$dir/one_warp.nii.gz" "$dir/r2_warp.nii.gz" <<'PY'
import gzip, struct, sys
import numpy as np
def load(p):
    b = gzip.open(p).read()
    off = int(struct.unpack('<f', b[108:112])[0])
    return np.frombuffer(b[off:], dtype='<f4')
a, b = load(sys.argv[1]), load(sys.argv[2])
print("%.3g %.3g" % (np.abs(a - b).max(), np.abs(a).max()))
PY
)
read -r dmax amax <<<"$diff"
desc="two ranks: largest warp difference ${dmax:-?} mm (warp up to ${amax:-?} mm) < 1e-3 mm" check \
	awk -v d="$dmax" 'BEGIN { exit !(d != "" && d + 0 < 1e-3) }'
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

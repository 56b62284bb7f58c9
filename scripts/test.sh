#!/usr/bin/env bash
# Fresh Debian 12 -> dependencies, a Release build, and the whole test suite.
# Test data are read from ../shared/data (FFDP_DATA_DIR overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
data="${FFDP_DATA_DIR:-$(cd .. && pwd)/shared/data}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFFDP_DATA_DIR="$data"
cmake --build build -j"$(nproc)"
cd build
# GPU-labelled tests need a device; bench/gpu/run.sh runs them there.
# Tests run side by side (-j), one OpenMP thread each unless told otherwise:
# oversubscribed spin-waiting threads slow barrier-heavy kernels tenfold.
# Tests that compare thread counts set them themselves.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
ctest --output-on-failure -j"$(nproc)" --timeout 1800 -LE gpu

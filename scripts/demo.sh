#!/usr/bin/env bash
# Fresh Debian 12 -> dependencies, a Release build, and the built-in demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
./build/ffdp demo -o ffdp-demo "$@"

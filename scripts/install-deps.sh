#!/usr/bin/env bash
# Installs what ffdp needs on Debian 12, only if something is missing.
# Build: cmake, a C compiler, OpenMP, nifti_clib, libpng, zlib, Open MPI.
# Tests: python3-nibabel (cross-checks our NIfTI files with an independent reader).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libnifti2-dev libpng-dev zlib1g-dev
      libopenmpi-dev openmpi-bin python3 python3-nibabel python3-numpy)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

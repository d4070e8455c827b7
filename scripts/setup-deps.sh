#!/usr/bin/env bash
# Installs the Debian 12 packages moesys needs (chromium: scripts/check-report.sh renders the study report pages
# in it). Idempotent; silent when everything is present.
set -euo pipefail
packages=(build-essential cmake pkg-config libsimgrid-dev libboost-graph-dev nlohmann-json3-dev
          libgtest-dev libgmock-dev libbenchmark-dev python3-matplotlib libjemalloc-dev
          libopenmpi-dev openmpi-bin libopenblas-dev chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup: installing ${missing[*]}"
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo use (tshark, prometheus with promtool, a C
# compiler for the NAA_SPEC strtol oracle and the C extensions of setup.py, Intel ISA-L's CRC
# for the RoCEv2 fast path),
# only when missing. Runs as root on the project's machines; elsewhere it says what to install.
set -euo pipefail
want=(tshark prometheus gcc libc6-dev libisal-dev mosquitto)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package starts a system Prometheus; the tests run their own instances.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
pkill -x prometheus 2>/dev/null || true

#!/usr/bin/env bash
# Installs the Debian packages the test suite drives as real peers, when they are missing.
set -euo pipefail
declare -A needs=(
  [sipp]=sip-tester
  [baresip]=baresip-core
  [espeak-ng]=espeak-ng
  [sox]=sox
)
missing=()
for cmd in "${!needs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${needs[$cmd]}")
done
# sox needs its format plugins for μ-law files
[ -e /usr/lib/x86_64-linux-gnu/sox/libsox_fmt_sndfile.so ] || ls /usr/lib/*/sox/libsox_fmt_sndfile.so >/dev/null 2>&1 || missing+=(libsox-fmt-all)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "The tests need these Debian packages: ${missing[*]}" >&2
  echo "Run as root, or install them: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Installs the Debian packages the test suite drives as real peers, when they are missing.
set -euo pipefail
# Kamailio is left unpinned (bookworm has 5.6.3-2, the version the harness was written against) so a
# Debian point release does not break the install; KAMAILIO_VERSION=5.6.3-2 pins it (and its TLS
# modules, which must match it exactly).
kam=${KAMAILIO_VERSION:+=$KAMAILIO_VERSION}
declare -A needs=(
  [sipp]=sip-tester
  [baresip]=baresip-core
  [espeak-ng]=espeak-ng
  [sox]=sox
  [kamailio]=kamailio$kam
)
missing=()
for cmd in "${!needs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${needs[$cmd]}")
done
# sox needs its format plugins for μ-law files
[ -e /usr/lib/x86_64-linux-gnu/sox/libsox_fmt_sndfile.so ] || ls /usr/lib/*/sox/libsox_fmt_sndfile.so >/dev/null 2>&1 || missing+=(libsox-fmt-all)
# kamailio's tls module (SIP over TLS to and from the test proxy) is a package of its own
ls /usr/lib/*/kamailio/modules/tls.so >/dev/null 2>&1 || ls /usr/lib/kamailio/modules/tls.so >/dev/null 2>&1 || missing+=("kamailio-tls-modules$kam")
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
# On a systemd host the kamailio package enables and starts its service, which listens on every
# interface at 5060 with the stock configuration. The tests run their own kamailio on 127.0.0.1:
# stop and disable the system one, if this run installed it.
if [[ " ${missing[*]} " == *" kamailio "* || " ${missing[*]} " == *" kamailio="* ]] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now kamailio.service >/dev/null 2>&1 || true
fi

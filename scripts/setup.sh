#!/usr/bin/env bash
# Install, with apt, everything faultline's build, tests and benchmarks need
# on Debian 12 (runc: the CRIU tests restore a real container lazily).
# Idempotent: prints nothing when all is already there.
set -euo pipefail

packages=(
	build-essential pkg-config meson ninja-build python3
	liburing-dev libevent-dev libprotobuf-c-dev protobuf-c-compiler
	libssl-dev libcap-dev libcmocka-dev
	clang llvm iproute2 openssl
	abigail-tools scdoc man-db
	runc
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || {
		echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
		exit 1
	}
	sudo=sudo
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"

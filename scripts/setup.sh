#!/usr/bin/env bash
# Installs what pikaci's demo and tests need on a fresh Debian 12 machine (as root):
# git, Nix, ssh, xmllint and shellcheck from Debian. Idempotent: installs only what is missing.
set -euo pipefail

need=()
command -v git >/dev/null || need+=(git)
command -v nix >/dev/null || need+=(nix-bin)
command -v unshare >/dev/null || need+=(util-linux)
command -v script >/dev/null || need+=(bsdutils)
command -v ssh >/dev/null || need+=(openssh-client)
command -v xmllint >/dev/null || need+=(libxml2-utils)
command -v shellcheck >/dev/null || need+=(shellcheck)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing; this machine kind ships a Rust toolchain (rustup)" >&2
  exit 1
fi

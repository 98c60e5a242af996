# shellcheck shell=bash
# Sourced by the scripts: Nix settings for this machine kind (Nix 2.8 from Debian, no
# daemon, no binary cache reachable). A caller's own NIX_CONFIG wins.
export NIX_CONFIG="${NIX_CONFIG:-$'experimental-features = nix-command flakes\nsubstituters ='}"

# Runs scripts/testbed/NAME.sh with ARGS and takes the variables it prints; the caller
# stops if it failed, where `eval "$(…)"` alone would go on without them.
testbed() {
  local vars
  vars=$(bash "scripts/testbed/$1.sh" "${@:2}")
  eval "$vars"
}

# shellcheck shell=bash
# Sourced by the scripts: Nix settings for this machine kind (Nix 2.8 from Debian, no
# daemon, no binary cache reachable). A caller's own NIX_CONFIG wins.
export NIX_CONFIG="${NIX_CONFIG:-$'experimental-features = nix-command flakes\nsubstituters ='}"

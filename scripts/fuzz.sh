#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ (cargo-afl works on stable Rust).
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
# Runs each target (default: all four) for SECONDS (default 300), two at a time, then
# prints executions, corpus size and crashes per target, and replays the Nix printer's
# corpus through `nix-instantiate --parse`. Exits 1 if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config request incus_json nix_printer)

if ! cargo afl --version >/dev/null 2>&1; then
    cargo install --locked cargo-afl
fi
# Builds AFL++'s runtime once per toolchain; says so and fails when it is already built.
cargo afl config --build >/dev/null 2>&1 || true
cargo afl build --release --locked

# Containers cannot tune the host for AFL; these only silence its checks.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1

fuzz() {
    local target=$1 dict=()
    [ -f "dicts/$target.dict" ] && dict=(-x "dicts/$target.dict")
    rm -rf "out/$target"
    cargo afl fuzz -V "$seconds" "${dict[@]}" -i "seeds/$target" -o "out/$target" \
        "target/release/$target" >"out/$target.log" 2>&1
}

mkdir -p out
for ((i = 0; i < ${#targets[@]}; i += 2)); do
    pids=()
    for target in "${targets[@]:i:2}"; do
        fuzz "$target" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
done

stat() { sed -n "s/^$2 *: //p" "out/$1/default/fuzzer_stats"; }
crashed=0
printf '%-12s %12s %8s %8s %8s\n' target executions per-sec corpus crashes
for target in "${targets[@]}"; do
    if [ ! -f "out/$target/default/fuzzer_stats" ]; then
        echo "$target: afl did not start; see fuzz/out/$target.log" >&2
        crashed=1
        continue
    fi
    printf '%-12s %12s %8s %8s %8s\n' "$target" "$(stat "$target" execs_done)" \
        "$(stat "$target" execs_per_sec)" "$(stat "$target" corpus_count)" \
        "$(stat "$target" saved_crashes)"
    if [ "$(stat "$target" saved_crashes)" != 0 ]; then
        crashed=1
        ls "out/$target/default/crashes/"
    fi
done

if [[ " ${targets[*]} " == *" nix_printer "* ]]; then
    # Everything AFL kept, printed as one list, must parse with the real parser too.
    corpus=(out/nix_printer/default/queue/id*)
    target/release/nix_corpus "${corpus[@]}" >out/nix_printer.nix
    nix-instantiate --parse out/nix_printer.nix >/dev/null
    echo "nix_printer: the ${#corpus[@]} corpus entries parse with nix-instantiate"
fi
exit "$crashed"

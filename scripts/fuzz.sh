#!/usr/bin/env bash
# Build the libFuzzer targets with clang (in build-fuzz/) and run each for
# N seconds (default 30). Exits non-zero if any target finds a crash; the
# crashing input is left in build-fuzz/crashes/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
dir=build-fuzz

if [ ! -f "$dir/build.ninja" ]; then
	CC=clang meson setup "$dir" -Dfuzz=true -Dtests=false -Dbuildtype=debugoptimized >/dev/null
fi
if ! ninja -C "$dir" -j2 >"$dir/build.log" 2>&1; then
	echo "fuzz: building with clang failed ($dir/build.log):"
	grep -E -A5 "FAILED|error" "$dir/build.log" | head -40
	exit 1
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for f in fuzz/fuzz_*.c; do
		targets+=("$(basename "$f" .c)")
	done
fi

mkdir -p "$dir/crashes"
status=0
for t in "${targets[@]}"; do
	name=${t#fuzz_}
	corpus="$dir/corpus/$name"
	mkdir -p "$corpus"
	echo "== $t for ${seconds}s (seeds: fuzz/corpus/$name)"
	if ! "$dir/fuzz/$t" -max_total_time="$seconds" -max_len=65536 \
		-artifact_prefix="$dir/crashes/$t-" -print_final_stats=1 \
		"$corpus" "fuzz/corpus/$name" 2> "$dir/$t.log"; then
		status=1
		echo "$t: FAILED, see $dir/$t.log and $dir/crashes/"
		tail -30 "$dir/$t.log"
	else
		grep -E "stat::number_of_executed_units|cov:" "$dir/$t.log" | tail -2
	fi
done
exit $status

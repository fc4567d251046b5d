#!/usr/bin/env bash
# fuzz.sh FUZZTIME MINIMIZETIME pkg:Target... fuzzes each target for
# FUZZTIME and fails naming every target that failed or no longer exists (a
# renamed target would otherwise be skipped in silence: go test passes when
# -fuzz matches nothing).
#
# Go 1.26's fuzz coordinator can report "context deadline exceeded" as a
# failure when -fuzztime ends while a worker is mid-call (golang/go#75804,
# fixed in Go 1.27). That failure writes no input: a run that fails with
# exactly that message and leaves no new file in testdata/fuzz/<Target>/ is
# reported as the toolchain's race and not counted. Any other failure, and
# any failure that wrote an input, counts.
set -uo pipefail
fuzztime=$1 minimize=$2
shift 2
GO=${GO:-go}
failed=""
for t in "$@"; do
  pkg=${t%%:*} name=${t##*:}
  if ! grep -qs "^func $name(f \*testing.F)" "$pkg"/*_test.go; then
    echo "fuzz: $pkg has no fuzz target $name" >&2
    failed="$failed $t"
    continue
  fi
  corpus="$pkg/testdata/fuzz/$name"
  before=$(ls "$corpus" 2>/dev/null | sort)
  echo "fuzz: $t for $fuzztime"
  out=$(mktemp)
  "$GO" test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  after=$(ls "$corpus" 2>/dev/null | sort)
  if [ "$rc" -ne 0 ]; then
    if [ "$before" = "$after" ] && grep -q '^    context deadline exceeded$' "$out" \
       && [ "$(grep -c '^--- FAIL' "$out")" -eq 1 ]; then
      echo "fuzz: $t: Go's fuzz coordinator reported its own deadline (golang/go#75804), no input failed" >&2
    else
      failed="$failed $t"
    fi
  fi
  rm -f "$out"
done
if [ -n "$failed" ]; then
  echo "fuzz: FAILED:$failed (failing inputs are in each package's testdata/fuzz/<Target>/)" >&2
  exit 1
fi

#!/usr/bin/env bash
# make fuzz: run every fuzz target for a bounded time each (default 60s).
# `go test` already replays each target's seed corpus and testdata/fuzz
# regressions in every normal run; this explores for new inputs. A crash
# leaves its input under the package's testdata/fuzz/ — commit it as a
# regression case and fix the bug.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-60s}
fail=0
while IFS=: read -r file name; do
  pkg=./$(dirname "$file")
  echo "== $pkg $name ($time)"
  if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="$time" -fuzzminimizetime=5s "$pkg"; then
    fail=1
  fi
done < <(grep -rho --include='*_test.go' -e '^func Fuzz[A-Za-z0-9_]*' --with-filename . | sed 's|^\./||; s|:func |:|' | sort -u)
exit $fail

#!/usr/bin/env bash
# The suite on several Airflow versions, COMPAT_JOBS at a time (default 2: one per core of a CI
# machine; each suite is one process with its own throwaway AIRFLOW_HOME and emulator port, so
# they cannot see each other). Each suite's output is printed whole when it ends, then a summary;
# exits non-zero if any failed. Slowest first, so the lanes end close together.
set -uo pipefail
jobs=${COMPAT_JOBS:-2}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
start=$(date +%s)
declare -A pid_of=()
status=0

finish_one() {
  local done_pid version code
  wait -n -p done_pid "${pid_of[@]}"
  code=$?
  for version in "${!pid_of[@]}"; do
    if [[ ${pid_of[$version]} == "$done_pid" ]]; then
      cat "$logs/$version.log"
      [[ $code -eq 0 ]] || { echo "  Airflow $version: FAILED (exit $code)"; status=1; }
      unset "pid_of[$version]"
      return
    fi
  done
}

# 3.0 is the slowest (its dag.test() is), 2.11 the fastest: longest first balances two lanes.
order=$(printf '%s\n' "$@" | awk '{ rank = ($0 ~ /^3\.0\./) ? 0 : ($0 ~ /^2\./) ? 9 : 5; print rank, $0 }' | sort -n | cut -d' ' -f2)
for version in $order; do
  while (( ${#pid_of[@]} >= jobs )); do finish_one; done
  scripts/suite-on-airflow.sh "$version" > "$logs/$version.log" 2>&1 &
  pid_of[$version]=$!
done
while (( ${#pid_of[@]} > 0 )); do finish_one; done
echo "  test-compat: $# suites, $jobs at a time, in $(( $(date +%s) - start )) s"
exit $status

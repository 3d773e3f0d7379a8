# Sourced by the package test scripts.
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

# Reads `systemd-analyze security` output on stdin; fails unless visiond's overall exposure
# is at most 3 ("OK").
exposure_at_most_3() {
  local report exposure
  report="$(cat)"
  echo "$report" | tail -1
  exposure="$(echo "$report" | sed -n 's/.*Overall exposure level for visiond.service: \([0-9.]*\).*/\1/p')"
  awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 3.0) }' || fail "exposure ${exposure:-unknown} is over 3"
}

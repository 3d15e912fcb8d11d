# Shared by the demos (Scripts/demo.sh, Scripts/demo-docpipeline.sh): sourced, after ROOT is set.
# Colours on a terminal; section/step headings; ok and fail; a trap that names the failing command.
# `show` echoes a command (paths under $BIN, $ROOT and $WORK shortened) and runs it.

if [ -t 1 ]; then BOLD=$'\e[1m'; RED=$'\e[31m'; GREEN=$'\e[32m'; DIM=$'\e[2m'; RESET=$'\e[0m'
else BOLD=""; RED=""; GREEN=""; DIM=""; RESET=""; fi

section() { printf '\n%s== %s ==%s\n' "$BOLD" "$*" "$RESET"; }
step() { printf '%s$ %s%s\n' "$DIM" "$*" "$RESET"; }
# set -e stops at the first failing command; say which one, rather than stopping silently.
trap 'printf "%sDEMO FAILED at line %s: %s%s\n" "$RED" "$LINENO" "$BASH_COMMAND" "$RESET" >&2' ERR
fail() { printf '%sDEMO FAILED: %s%s\n' "$RED" "$*" "$RESET" >&2; exit 1; }
ok() { printf '%sok%s  %s\n' "$GREEN" "$RESET" "$*"; }

# Runs a command after echoing it (paths shortened for reading).
show() {
  step "$(printf '%s ' "$@" | sed -e "s#${BIN:-/nonexistent}/##g" -e "s#$ROOT/##g" -e "s#${WORK:-/nonexistent}/##g")"
  "$@"
}

# Prints a log file with a prefix on each line.
print_log() { sed "s/^/$2 | /" "$1"; }

# Waits for a worker's start-up line: wait_for_line LOG PATTERN PID SECONDS MESSAGE. Fails with the
# worker's log when the process exits first, or with MESSAGE when SECONDS pass without the line.
wait_for_line() {
  local log="$1" pattern="$2" pid="$3" seconds="$4" message="$5"
  for _ in $(seq 1 $((seconds * 10))); do
    grep -q "$pattern" "$log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { print_log "$log" worker; fail "the worker exited at start"; }
    sleep 0.1
  done
  grep -q "$pattern" "$log" || { print_log "$log" worker; fail "$message"; }
}

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

#!/usr/bin/env bash
# Counts the CPU instructions one workflow step costs the engine, with valgrind's callgrind: runs
# `durable-bench --workloads long_steps` (the `long` workflow alone: see
# Benchmarks/DurableBenchmarks/StepCount.swift) with N and 2N steps and prints (I(2N) - I(N)) / N,
# so that start-up, the warm-up workflow and shut-down cancel out. Instruction counts move far less
# with the machine's load than seconds do. See Docs/benchmarks.md, "CPU per step (callgrind)".
#
#   bash Scripts/callgrind-step.sh                       # build in release, N = 2000, durability fast
#   bash Scripts/callgrind-step.sh --steps 100 --durability full --top 40 --no-build
#   bash Scripts/callgrind-step.sh --binary /tmp/durable-bench-before   # another build of the bench
#
# Options:
#   --steps N          N (default 2000); the runs are N and 2N steps (valgrind runs ~50x slower).
#                      Work done once (statements prepared, a checkpoint) lands in one run or the
#                      other: with N = 200 pairs moved by up to 8 % on a busy machine, with 2000 by 0.3 %
#   --durability D     fast (default) or full
#   --repeat R         R pairs of runs (default 1), each figure printed and their median last
#   --top K            also print the K functions with the most instructions per step (self cost,
#                      and inclusive cost for the functions that are not recursive through the
#                      async machinery), as differences of the two runs
#   --keep DIR         keep the callgrind.out files in DIR (for callgrind_annotate)
#   --binary PATH      count PATH instead of building .build/release/durable-bench
#   --no-build         use the existing .build/release/durable-bench
#
# valgrind: Debian 12's valgrind 3.19 cannot read the DWARF 5 debug information of Swift 6 binaries
# ("Possibly corrupted debuginfo file"). When the valgrind on PATH is older than 3.22, the script
# fetches Debian 13's valgrind package with apt-get (into $DURABLE_VALGRIND_CACHE, default
# ~/.cache/durable-valgrind; nothing is installed system-wide) and runs it from there. It also preloads a
# 10-line shim: libdispatch's main thread calls sigsuspend() with a mask in read-only memory, which
# valgrind writes to and dies of (an internal SIGSEGV); the shim passes a copy.
set -euo pipefail
cd "$(dirname "$0")/.."

steps=2000
durability=fast
top=0
repeat=1
keep=""
binary=""
build=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --steps) steps="$2"; shift 2 ;;
        --durability) durability="$2"; shift 2 ;;
        --top) top="$2"; shift 2 ;;
        --repeat) repeat="$2"; shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        --binary) binary="$2"; build=0; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "callgrind-step.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$steps" =~ ^[1-9][0-9]*$ ]] || { echo "callgrind-step.sh: --steps '$steps' is not a positive count" >&2; exit 2; }
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || { echo "callgrind-step.sh: --repeat '$repeat' is not a positive count" >&2; exit 2; }
[[ "$durability" == fast || "$durability" == full ]] || { echo "callgrind-step.sh: --durability is fast or full" >&2; exit 2; }

if [[ $build == 1 ]]; then
    swift build -c release --product durable-bench >&2
fi
bench="${binary:-.build/release/durable-bench}"
[[ -x "$bench" ]] || { echo "callgrind-step.sh: no benchmark binary at $bench" >&2; exit 1; }

# --- a valgrind that reads Swift 6's debug information ----------------------------------------------
cache="${DURABLE_VALGRIND_CACHE:-$HOME/.cache/durable-valgrind}"
mkdir -p "$cache"
valgrind_bin=valgrind
annotate=callgrind_annotate
version_ok() {  # valgrind-3.19.0 -> needs >= 3.22
    local v; v=$("$1" --version 2>/dev/null | sed -n 's/^valgrind-\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    [[ -n "$v" ]] && read -r major minor <<<"$v" && (( major > 3 || (major == 3 && minor >= 22) ))
}
if ! version_ok valgrind; then
    if [[ ! -x "$cache/vg/usr/bin/valgrind.bin" ]]; then
        echo "callgrind-step.sh: valgrind on PATH is missing or older than 3.22; fetching Debian 13's package into $cache" >&2
        mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial"
        echo "deb http://deb.debian.org/debian trixie main" > "$cache/apt/sources.list"
        apt_options=(-o "Dir::Etc::SourceList=$cache/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
                     -o "Dir::State::Lists=$cache/apt/lists" -o "Dir::Cache=$cache/apt/cache")
        apt-get "${apt_options[@]}" update >&2
        (cd "$cache" && apt-get "${apt_options[@]}" download valgrind >&2)
        rm -rf "$cache/vg"
        dpkg -x "$cache"/valgrind_*.deb "$cache/vg"
    fi
    export VALGRIND_LIB="$cache/vg/usr/libexec/valgrind"
    valgrind_bin="$cache/vg/usr/bin/valgrind"
    annotate="$cache/vg/usr/bin/callgrind_annotate"
fi
shim="$cache/sigsuspend-shim.so"
if [[ ! -f "$shim" ]]; then
    cat > "$cache/sigsuspend-shim.c" <<'EOF'
/* libdispatch's main thread calls sigsuspend() with a mask in read-only memory; valgrind edits the
   mask in place and stops with an internal SIGSEGV. Pass it a copy on the stack. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
int sigsuspend(const sigset_t *mask) {
    sigset_t copy = *mask;
    return (int)syscall(SYS_rt_sigsuspend, &copy, 8);
}
EOF
    cc -O2 -shared -fPIC -o "$shim" "$cache/sigsuspend-shim.c"
fi

# --- the two runs -------------------------------------------------------------------------------------
out="${keep:-$(mktemp -d)}"
mkdir -p "$out"
count() {  # steps -> instructions
    local n=$1 file="$out/callgrind.$durability.$1.out"
    LD_PRELOAD="$shim" "$valgrind_bin" --tool=callgrind --separate-threads=no --dump-instr=no \
        --collect-atstart=yes --callgrind-out-file="$file" \
        "$bench" --workloads long_steps --durability "$durability" --long-steps "$n" --rounds 1 \
        > "$out/stdout.$durability.$n" 2> "$out/stderr.$durability.$n" \
        || { echo "callgrind-step.sh: the run of $n steps failed; see $out/stderr.$durability.$n" >&2; exit 1; }
    sed -n 's/^summary: \([0-9]*\)$/\1/p' "$file"
}
figures=()
for ((r = 1; r <= repeat; r++)); do
    small=$(count "$steps")
    big=$(count "$((2 * steps))")
    figures+=($(( (big - small) / steps )))
    echo "durability $durability: $steps steps $small instructions, $((2 * steps)) steps $big instructions: $(( (big - small) / steps )) per step"
done
median=$(printf '%s\n' "${figures[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
echo "instructions per step: $median"

if [[ "$top" -gt 0 ]]; then
    CALLGRIND_ANNOTATE="$annotate" python3 - "$out/callgrind.$durability.$steps.out" "$steps" \
        "$out/callgrind.$durability.$((2 * steps)).out" "$((2 * steps))" "$top" <<'EOF'
import os, re, subprocess, sys
annotate = os.environ["CALLGRIND_ANNOTATE"]
small, n_small, big, n_big, top = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])

def table(path, inclusive):
    text = subprocess.run([annotate, f"--inclusive={inclusive}", "--threshold=100", "--auto=no", path],
                          capture_output=True, text=True, check=True).stdout
    rows, total = {}, 0
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        count, name = int(m.group(1).replace(",", "")), re.sub(r" \[[^\]]*\]$", "", m.group(2))
        if name.startswith("PROGRAM TOTALS"):
            total = count
        else:
            file = re.match(r"^(\?\?\?|[^\s:]*/[^\s:]*|[^\s:]+\.(?:swift|c|h|cc|cpp|S|inc)):(.*)$", name)
            name = file.group(2) if file else name  # one function, whichever file its pieces came from
            rows[name] = rows.get(name, 0) + count
    return total, rows

def demangled(names):
    try:
        out = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(names),
                             capture_output=True, text=True).stdout.splitlines()
        return dict(zip(names, out)) if len(out) == len(names) else {}
    except OSError:
        return {}

steps = n_big - n_small
for inclusive, title in (("no", "self"), ("yes", "inclusive")):
    t_small, a = table(small, inclusive)
    t_big, b = table(big, inclusive)
    per = (t_big - t_small) / steps
    diff = {k: (b.get(k, 0) - a.get(k, 0)) / steps for k in set(a) | set(b)}
    best = sorted(diff.items(), key=lambda kv: -kv[1])[:top]
    names = demangled([k for k, _ in best])
    print(f"\ntop {top} functions, {title} instructions per step (of {per:,.0f}):")
    for k, v in best:
        print(f"{v:10,.0f} {100 * v / per:6.1f} %  {names.get(k, k)[:150]}")
EOF
fi
[[ -n "$keep" ]] || rm -rf "$out"

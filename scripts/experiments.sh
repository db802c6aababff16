#!/usr/bin/env bash
# The asynchronous algorithms against their baselines on a residual network, as their papers
# claim them, from a fresh clone with one command. Everything lands under one folder:
# metrics per run (JSON Lines), plots (SVG) and a summary table (summary.md).
#
#   scripts/experiments.sh [--quick] [--out DIR] [--repeats N]
#
# Table 1, one process: 4 workers, one 4x straggler, a fixed device time per step that
#   dominates compute; sync, hogwild and pdasgd (asgd bench async), each repeated.
# Table 2, four processes: sync (DDP), localsgd, dasgd and lasgd with 0 and 50 ms per
#   message and with one 4x straggler rank; time to target, accuracy, communication hidden.
#
# Full: resnet --depth 20 on Fashion-MNIST (asgd data fetch fashion-mnist first; DATA and
# DATA_DIR override), target 85%, 3 epochs (EPOCHS), 3 repeats. --quick: resnet8 on the
# built-in digits, 1 epoch, 1 repeat, target 50%: minutes on a CPU driver, as a smoke test
# of the whole pipeline, not a measurement.
set -euo pipefail
QUICK=0
OUT=experiments
REPEATS=3
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --out) OUT=$2; shift ;;
        --repeats) REPEATS=$2; shift ;;
        *) echo "unknown argument $1 (use --quick, --out DIR, --repeats N)" >&2; exit 2 ;;
    esac
    shift
done
ASGD=${ASGD:-}
if [ -z "$ASGD" ]; then
    cargo build --release --quiet
    ASGD=target/release/asgd
fi
if [ "$QUICK" = 1 ]; then
    MODEL=(--model resnet8)
    DATA_FLAGS=(--data digits)
    EPOCHS=${EPOCHS:-1}
    TARGET=${TARGET:-50}
    STEP_MS=${STEP_MS:-20}
    BATCH=${BATCH:-32}
    [ "$REPEATS" = 3 ] && REPEATS=1
else
    MODEL=(--model resnet --depth "${DEPTH:-20}")
    DATA_FLAGS=(--data "${DATA:-fashion-mnist}")
    if [ -n "${DATA_DIR:-}" ]; then DATA_FLAGS+=(--data-dir "$DATA_DIR"); fi
    EPOCHS=${EPOCHS:-3}
    TARGET=${TARGET:-85}
    STEP_MS=${STEP_MS:-200}
    BATCH=${BATCH:-128}
fi
mkdir -p "$OUT"
SUMMARY="$OUT/summary.md"
{
    echo "# Experiments ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "model: ${MODEL[*]}; data: ${DATA_FLAGS[*]}; epochs $EPOCHS; batch $BATCH; target $TARGET%;"
    echo "device: $("$ASGD" devices 2>/dev/null | head -n 2 | tail -n 1)"
} >"$SUMMARY"

# Table 1: one process, 4 workers, a 4x straggler, a device time per step of STEP_MS.
DELAY="all:fixed=${STEP_MS}ms;worker=3:factor=4"
for i in $(seq 1 "$REPEATS"); do
    dir="$OUT/one-process/run$i"
    mkdir -p "$dir"
    "$ASGD" bench async "${MODEL[@]}" "${DATA_FLAGS[@]}" --workers 4 --inject-delay "$DELAY" \
        --algos sync,hogwild,pdasgd --epochs "$EPOCHS" --batch "$BATCH" --target-acc "$TARGET" \
        --seed "$i" --eval-every 20 --out "$dir" --plot "$dir/accuracy.svg" | tee "$dir/stdout.txt"
done

# Table 2: four processes.
run4() { # name, then train flags
    local name=$1
    shift
    local dir="$OUT/four-processes/$name"
    mkdir -p "$dir"
    "$ASGD" launch --nproc 4 -- train "${MODEL[@]}" "${DATA_FLAGS[@]}" --epochs "$EPOCHS" --batch "$BATCH" \
        --target-acc "$TARGET" --eval-every 20 -q --metrics "$dir/$name.jsonl" "$@" >"$dir/stdout.txt" 2>&1
}
for algo in sync localsgd dasgd lasgd; do
    extra=()
    case $algo in
        dasgd | lasgd) extra=(--avg-period 8 --avg-delay 4) ;;
        localsgd) extra=(--avg-period 8) ;;
    esac
    run4 "$algo-0ms" --algo "$algo" "${extra[@]}"
    run4 "$algo-50ms" --algo "$algo" --net-delay 50 "${extra[@]}"
    run4 "$algo-straggler" --algo "$algo" --inject-delay "worker=3:factor=4" "${extra[@]}"
done
for net in 0ms 50ms straggler; do
    files=()
    for algo in sync localsgd dasgd lasgd; do files+=("$OUT/four-processes/$algo-$net/$algo-$net.jsonl"); done
    "$ASGD" plot "${files[@]}" --x wall --title "4 processes, ${MODEL[*]}, $net" -o "$OUT/four-processes/$net-time.svg"
    "$ASGD" plot "${files[@]}" --x samples --title "4 processes, ${MODEL[*]}, $net" -o "$OUT/four-processes/$net-samples.svg"
done

python3 - "$OUT" "$TARGET" >>"$SUMMARY" <<'EOF'
import json, statistics, sys, pathlib
out, target = pathlib.Path(sys.argv[1]), float(sys.argv[2]) / 100

def events(path):
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]

def med(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "not reached"
    m = statistics.median(xs)
    return f"{m:.1f}" + (f" ({min(xs):.1f}-{max(xs):.1f})" if len(xs) > 1 else "")

print("\n## One process, 4 workers, one 4x straggler\n")
print("| algo | time to target (s), median (range) | final accuracy % | speed-up over sync | ideal |")
print("|---|---|---|---|---|")
rows = {}
for stdout in sorted(out.glob("one-process/run*/stdout.txt")):
    for line in stdout.read_text().splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            rows.setdefault(r["algo"], []).append(r)
for algo, rs in rows.items():
    acc = med([100 * r["final_acc"] for r in rs])
    sp = med([r["speedup_vs_sync"] for r in rs])
    print(f"| {algo} | {med([r['time_to_target_s'] for r in rs])} | {acc} | {sp} | {rs[0]['ideal_speedup']:.2f} |")

print("\n## Four processes\n")
print("| run | time to target (s) | test accuracy % | accuracy at sync's samples % | communication hidden |")
print("|---|---|---|---|---|")
runs = {}
for f in sorted(out.glob("four-processes/*/*.jsonl")):
    if ".rank" in f.name:
        continue
    runs[f.stem] = events(f)
for name, ev in runs.items():
    evals = [e for e in ev if e["event"] == "eval"]
    done = next((e for e in ev if e["event"] == "done"), {})
    reached = next((e["wall_s"] for e in evals if e["test_acc"] >= target), None)
    net = name.split("-", 1)[1]
    sync = runs.get(f"sync-{net}", [])
    sync_samples = max((e.get("samples", 0) for e in sync if e["event"] == "eval"), default=None)
    at = [e["test_acc"] for e in evals if sync_samples is not None and e.get("samples", 0) <= sync_samples]
    hidden = (done.get("averaging") or {}).get("hidden_fraction")
    acc_at = f"{100 * at[-1]:.2f}" if at else "-"
    hid = "-" if hidden is None else f"{100 * hidden:.0f}%"
    print(f"| {name} | {med([reached])} | {100 * done.get('test_acc', float('nan')):.2f} | {acc_at} | {hid} |")
EOF
echo "summary: $SUMMARY"
cat "$SUMMARY"

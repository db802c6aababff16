#!/usr/bin/env bash
# Elastic training, measured: a 4-rank job run undisturbed, then the same job with rank 2
# killed (kill -9) mid-run and started again. Prints each run's test accuracy and model
# checksums, and how long after the kill rank 0 had dropped the rank and the others went on.
#
#   scripts/elastic-check.sh [ALGO] [extra train flags...]
#
# Environment: ASGD (the binary, default target/release/asgd), DATA (default mnist), DATA_DIR
# (default: asgd's own default folder), EPOCHS (2), BATCH (64), KILL_STEP (rank 0's step to
# kill at, 150), OUT (the folder for metrics and logs, default elastic-check).
set -euo pipefail
ALGO=${1:-localsgd}
shift || true
ASGD=${ASGD:-target/release/asgd}
DATA=${DATA:-mnist}
EPOCHS=${EPOCHS:-2}
BATCH=${BATCH:-64}
KILL_STEP=${KILL_STEP:-150}
OUT=${OUT:-elastic-check}/$ALGO
mkdir -p "$OUT"
if [ -z "${SKIP_CALM:-}" ]; then rm -f "$OUT"/*; else rm -f "$OUT"/hit* "$OUT"/back*; fi
export WORLD_SIZE=4 MASTER_ADDR=127.0.0.1 ASGD_COMM_TIMEOUT_S=${ASGD_COMM_TIMEOUT_S:-30}
ARGS=(train --elastic --algo "$ALGO" --data "$DATA" --epochs "$EPOCHS" --batch "$BATCH" -q "$@")
if [ -n "${DATA_DIR:-}" ]; then ARGS+=(--data-dir "$DATA_DIR"); fi

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
field() { tail -n 1 "$1" | python3 -c "import json,sys; e=json.load(sys.stdin); print(e.get('$2'))"; }
now() { date +%s.%N; }

start_rank() { # rank tag; sets PID (no subshell: the shell must be the rank's parent to wait)
    RANK=$1 "$ASGD" "${ARGS[@]}" --metrics "$OUT/$2.jsonl" >/dev/null 2>"$OUT/$2.rank$1.err" &
    PID=$!
}

# An undisturbed job (SKIP_CALM=1 keeps the one already in OUT).
export MASTER_PORT=$(port)
pids=()
if [ -z "${SKIP_CALM:-}" ]; then
    for r in 0 1 2 3; do
        start_rank $r calm
        pids+=("$PID")
    done
    wait "${pids[@]}"
fi
calm_acc=$(field "$OUT/calm.jsonl" test_acc)

# The same job, rank 2 killed mid-run and started again.
export MASTER_PORT=$(port)
start_rank 0 hit; p0=$PID
start_rank 1 hit; p1=$PID
start_rank 2 hit; p2=$PID
start_rank 3 hit; p3=$PID
until [ -s "$OUT/hit.jsonl" ] && [ "$(field "$OUT/hit.jsonl" step)" != None ] &&
    [ "$(field "$OUT/hit.jsonl" step)" -ge "$KILL_STEP" ]; do sleep 0.05; done
kill -9 "$p2"
killed=$(now)
until grep -q "rank 2 left the job" "$OUT/hit.rank0.err"; do sleep 0.02; done
dropped=$(now)
start_rank 2 back; p2b=$PID
restarted=$(now)
until grep -q "rank 2 joined the job" "$OUT/hit.rank0.err"; do
    kill -0 "$p0" 2>/dev/null || break
    sleep 0.05
done
joined=$(now)
status=0
for p in "$p0" "$p1" "$p3" "$p2b"; do wait "$p" || status=$?; done
wait "$p2" 2>/dev/null || true
hit_acc=$(field "$OUT/hit.jsonl" test_acc)

echo "algorithm: $ALGO, $DATA, $EPOCHS epochs, batch $BATCH, 4 ranks; rank 2 killed at rank 0's step >= $KILL_STEP"
echo "exit status of ranks 0, 1, 3 and the restarted 2: $status"
echo "undisturbed test accuracy: $calm_acc"
echo "disturbed   test accuracy: $hit_acc"
since() { python3 -c "print(f'{$2 - $1:.3f}')"; }
echo "kill -> rank 0 dropped rank 2 and the round completed: $(since "$killed" "$dropped") s"
echo "restart -> rank 2 let back in: $(since "$restarted" "$joined") s"
grep -h "left the job\|joined the job" "$OUT/hit.rank0.err"
for f in "$OUT"/hit.jsonl "$OUT"/hit.rank1.jsonl "$OUT"/back.rank2.jsonl "$OUT"/hit.rank3.jsonl; do
    echo "$(basename "$f"): steps $(field "$f" steps), model $(field "$f" model_checksum)"
done
exit "$status"

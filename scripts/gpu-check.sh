#!/usr/bin/env bash
# The GPU check: on a machine with a GPU, build asgd, run the kernel tests on that adapter,
# time `asgd bench matmul` and `asgd bench step` (MLP, LeNet-5, ResNet-20 and ResNet-18 on
# 3x32x32 at batch 128), and, where python3 has torch with CUDA, the same products and steps in
# PyTorch fp32 with TF32 off, in the same run. Prints one table; everything it measured is in
# $GPU_CHECK_OUT (default target/gpu-check). Meant to finish in under 8 minutes.
#
#   scripts/gpu-check.sh            # the whole check
#   GPU_CHECK_QUICK=1 scripts/...   # smaller sizes and fewer steps (a smoke test of the script)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${GPU_CHECK_OUT:-target/gpu-check}
mkdir -p "$out"
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
start=$(date +%s)
sizes=512,1024,2048,4096
steps=20
models=mlp,lenet,resnet20,resnet18
if [ -n "${GPU_CHECK_QUICK:-}" ]; then
    sizes=256
    steps=2
    models=mlp,lenet
fi
step() { echo "== $* ($(($(date +%s) - start)) s)" >&2; }

step "build"
cargo build --bin asgd --tests -p asgd-engine -p asgd >"$out/build.log" 2>&1 || {
    tail -20 "$out/build.log"
    echo "build failed; see $out/build.log" >&2
    exit 1
}
asgd=target/debug/asgd
$asgd devices | tee "$out/devices.txt"

step "kernel tests against their CPU references"
if timeout 240 cargo test -q -p asgd-engine --test kernels >"$out/kernels.log" 2>&1; then
    kernels="passed"
else
    kernels="FAILED (see $out/kernels.log)"
fi
grep -E "^test result" "$out/kernels.log" >&2

step "asgd bench matmul"
timeout 120 $asgd bench matmul --sizes $sizes --kernels auto,tiled,blocked --min-time 0.2 >"$out/asgd-matmul.txt" 2>&1
step "asgd bench step"
timeout 150 $asgd bench step --models $models --steps $steps >"$out/asgd-step.txt" 2>&1

torch="not run"
if command -v python3 >/dev/null; then
    step "PyTorch fp32 reference"
    timeout 120 python3 scripts/torch_reference.py --sizes $sizes --steps $steps --models $models \
        >"$out/torch.txt" 2>"$out/torch.err"
    case $? in
        0) torch="ran" ;;
        3) torch="not available: $(head -1 "$out/torch.err")" ;;
        *) torch="FAILED (see $out/torch.err)" ;;
    esac
fi

step "table"
cat "$out"/asgd-matmul.txt "$out"/asgd-step.txt "$out"/torch.txt 2>/dev/null | grep '^{' >"$out/results.jsonl"
python3 - "$out/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
dev = next((r["device"] for r in rows if r.get("kernel") != "torch"), "?")
print(f"device: {dev}")
mm = {}
for r in (r for r in rows if r["bench"] == "matmul"):
    mm.setdefault(r["shape"], {})[r["kernel"] if r["kernel"] == "torch" else r.get("kernel")] = r["gflops"]
print(f"{'product':<16}{'best asgd':>22}{'GFLOP/s':>10}{'torch':>10}{'ratio':>8}")
for shape, ks in mm.items():
    ours = {k: v for k, v in ks.items() if k != "torch"}
    if not ours:
        continue
    k, v = max(ours.items(), key=lambda kv: kv[1])
    t = ks.get("torch")
    print(f"{shape:<16}{k:>22}{v:>10.1f}{(f'{t:.1f}' if t else '-'):>10}{(f'{v / t:.2f}' if t else '-'):>8}")
print(f"{'step':<16}{'batch':>22}{'samples/s':>10}{'torch':>10}{'ratio':>8}")
ours = {r["model"]: r for r in rows if r["bench"] == "step" and r.get("kernel") != "torch"}
theirs = {r["model"]: r for r in rows if r["bench"] == "step" and r.get("kernel") == "torch"}
names = {"mlp:512,512": "mlp", "resnet:20": "resnet20", "resnet-20": "resnet20"}
for model, r in ours.items():
    t = theirs.get(names.get(model, model)) or theirs.get(model)
    v = r["samples_per_s"]
    tv = t["samples_per_s"] if t else None
    print(f"{model:<16}{r['batch']:>22}{v:>10.0f}{(f'{tv:.0f}' if tv else '-'):>10}{(f'{v / tv:.2f}' if tv else '-'):>8}")
PY
echo "kernel tests: $kernels; PyTorch: $torch; $(($(date +%s) - start)) s in all"

#!/usr/bin/env python3
"""PyTorch fp32 (TF32 off) timings of the products and training steps `asgd bench matmul` and
`asgd bench step` time, printed as the same JSON lines, for scripts/gpu-check.sh.

Usage: torch_reference.py [--sizes 512,1024] [--steps 20] [--models mlp,lenet,resnet20,resnet18]
Exits 3 when torch or CUDA is missing (the check then reports asgd alone).
"""
import argparse
import json
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("torch is not installed", file=sys.stderr)
    sys.exit(3)
if not torch.cuda.is_available():
    print("torch has no CUDA device", file=sys.stderr)
    sys.exit(3)

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.backends.cudnn.benchmark = True
dev = torch.device("cuda")

from torch_models import resnet  # noqa: E402 (after the check that torch is there)


def timed(fn, min_time=0.2):
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    once = max(time.perf_counter() - t0, 1e-6)
    reps = max(1, min(1000, int(min_time / once)))
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def matmuls(sizes):
    shapes = [(f"square {n}", n, n, n, False, False) for n in sizes] + [
        ("fc1 forward", 128, 512, 784, False, True),
        ("fc1 dW", 512, 784, 128, True, False),
        ("fc2 forward", 128, 512, 512, False, True),
        ("fc2 dX", 128, 512, 512, False, False),
        ("fc2 dW", 512, 512, 128, True, False),
        ("fc3 forward", 128, 10, 512, False, True),
    ]
    for label, m, n, k, ta, tb in shapes:
        a = torch.rand((k, m) if ta else (m, k), device=dev)
        b = torch.rand((n, k) if tb else (k, n), device=dev)
        aa = a.t() if ta else a
        bb = b.t() if tb else b
        secs = timed(lambda: torch.mm(aa, bb))
        print(json.dumps({"bench": "matmul", "shape": label, "m": m, "n": n, "k": k, "trans_a": ta,
                          "trans_b": tb, "kernel": "torch", "ms": 1e3 * secs,
                          "gflops": 2 * m * n * k / secs / 1e9, "device": torch.cuda.get_device_name()}))


def model(name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                             nn.Linear(512, 10)), (1, 28, 28), 128
    if name == "lenet":
        return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84),
                             nn.ReLU(), nn.Linear(84, 10)), (1, 28, 28), 64
    if name == "resnet18":
        return resnet([64, 128, 256, 512], [2, 2, 2, 2]), (3, 32, 32), 128
    if name.startswith("resnet"):
        depth = int(name[len("resnet"):] or 20)
        n = (depth - 2) // 6
        return resnet([16, 32, 64], [n, n, n]), (3, 32, 32), 128
    raise SystemExit(f"unknown model {name}")


def steps(names, count):
    for name in names:
        net, shape, batch = model(name)
        net = net.to(dev)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        x = torch.rand((batch, *shape), device=dev) - 0.5
        y = torch.arange(batch, device=dev) % 10

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(count):
            step()
        torch.cuda.synchronize()
        secs = (time.perf_counter() - t0) / count
        print(json.dumps({"bench": "step", "model": name, "batch": batch, "ms_per_step": 1e3 * secs,
                          "samples_per_s": batch / secs, "kernel": "torch",
                          "device": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="512,1024,2048,4096")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--models", default="mlp,lenet,resnet20,resnet18")
    args = p.parse_args()
    matmuls([int(s) for s in args.sizes.split(",")])
    steps(args.models.split(","), args.steps)

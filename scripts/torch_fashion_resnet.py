#!/usr/bin/env python3
"""The Fashion-MNIST ResNet recipe in PyTorch, as a reference for `asgd train`.

Trains the same network as `asgd train --model resnet --depth D` (He et al.'s CIFAR ResNet:
3x3 stem, three stages of BasicBlocks with 16/32/64 channels, projection shortcuts, global
average pooling; torchvision's initialisation) with the same recipe: SGD, momentum, weight
decay on every parameter, a cosine rate per step down to 0 at the last step, the last partial
batch of an epoch dropped, each epoch a fresh random order. Prints the test accuracy after
every epoch, one line each.

    python3 scripts/torch_fashion_resnet.py --data-dir DIR [--depth 8] [--epochs 2] [--seed 0]

DIR holds the four idx files (gzipped or not). Runs on the CPU unless CUDA is there; needs
torch. The seed only seeds PyTorch: the initial weights and the order differ from asgd's.
"""
import argparse
import gzip
import math
import os
import struct
import sys
import time


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return shape, data[4 + 4 * dims:]


def load(torch, folder, split):
    def find(stem):
        for name in (stem, stem + ".gz"):
            if os.path.exists(os.path.join(folder, name)):
                return os.path.join(folder, name)
        sys.exit(f"{stem}(.gz) not found in {folder}")

    prefix = "train" if split == "train" else "t10k"
    shape, pixels = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    _, labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    x = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).float().div(255).view(shape[0], 1, shape[1], shape[2])
    # The normalisation asgd uses for Fashion-MNIST (its training set's mean and deviation).
    x = (x - 0.2860) / 0.3530
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    return x, y


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    a = p.parse_args()
    if (a.depth - 2) % 6 or a.depth < 8:
        sys.exit("--depth must be 6n+2 with n >= 1")
    try:
        import torch
        import torch.nn.functional as F
        from torch_models import resnet
    except ImportError as e:
        sys.exit(f"torch is not installed ({e})")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    xtr, ytr = load(torch, a.data_dir, "train")
    xte, yte = load(torch, a.data_dir, "test")
    xtr, ytr, xte, yte = xtr.to(dev), ytr.to(dev), xte.to(dev), yte.to(dev)
    n = (a.depth - 2) // 6
    model = resnet([16, 32, 64], [n, n, n], in_channels=1).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    steps_per_epoch = len(xtr) // a.batch
    total = steps_per_epoch * a.epochs
    step, start = 0, time.time()
    print(f"resnet:{a.depth} ({sum(p.numel() for p in model.parameters())} parameters) on {dev}, seed {a.seed}",
          flush=True)
    for epoch in range(1, a.epochs + 1):
        model.train()
        order = torch.randperm(len(xtr), device=dev)
        for b in range(steps_per_epoch):
            for g in opt.param_groups:
                g["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            idx = order[b * a.batch:(b + 1) * a.batch]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(xte), 1000):
                correct += (model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
        print(f"epoch {epoch}: test accuracy {100 * correct / len(xte):.2f}% "
              f"(train loss {loss.item():.4f}, {time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

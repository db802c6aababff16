"""The networks of `asgd`'s models in PyTorch, for the reference scripts beside this file."""
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    """torchvision's BasicBlock: conv3x3, bn, relu, conv3x3, bn, plus a projection shortcut
    (1x1 conv, bn) where the stride or the width changes; relu after the sum."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


def resnet(widths, blocks, classes=10, in_channels=3):
    """A 3x3 stem (stride 1, no max-pool), stages of `blocks[i]` Blocks of `widths[i]` channels
    (stride 2 at the start of every stage after the first), global average pooling and a linear
    layer, initialised as torchvision does (and as asgd does)."""
    layers = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    cin = widths[0]
    for i, (w, n) in enumerate(zip(widths, blocks)):
        for j in range(n):
            layers.append(Block(cin, w, 2 if (i > 0 and j == 0) else 1))
            cin = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net

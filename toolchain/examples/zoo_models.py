"""A few zoo architectures for `mcu bench` (the same shapes as tests/zoo.py, issue #12):
PyTorch modules with seeded random weights and non-trivial BatchNorm statistics.

    module, shape = zoo_module("fc_autoencoder_640")     # eval mode; shape as PyTorch feeds it

Only torch here (the bottom layer): the bench exports, quantizes and writes the .tflite.
"""
from __future__ import annotations


def _cbr(nn, cin, cout, k=3, s=1, groups=1, act="relu6"):
    layers = [nn.Conv2d(cin, cout, k, s, padding=k // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    if act == "relu6":
        layers.append(nn.ReLU6())
    elif act == "relu":
        layers.append(nn.ReLU())
    return layers


def fc_autoencoder(n=640, hidden=128, bottleneck=8, depth=2):
    """Anomaly-detection autoencoder (MLPerf Tiny AD shape): 640 -> 128 ... -> 640."""
    from torch import nn
    dims = [n] + [hidden] * depth + [bottleneck] + [hidden] * depth + [n]
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers += [nn.BatchNorm1d(dims[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers), (1, n)


def mobilenet_v2(res=32, classes=10, w=8):
    """MobileNetV2: 1x1 expansion, depthwise, linear bottleneck, inverted residuals."""
    from torch import nn

    class InvRes(nn.Module):
        def __init__(self, cin, cout, s, t):
            super().__init__()
            h = cin * t
            self.res = s == 1 and cin == cout
            self.f = nn.Sequential(*_cbr(nn, cin, h, 1), *_cbr(nn, h, h, 3, s, groups=h),
                                   *_cbr(nn, h, cout, 1, act=None))

        def forward(self, x):
            y = self.f(x)
            return x + y if self.res else y
    net = nn.Sequential(*_cbr(nn, 3, w, 3, 2), InvRes(w, w, 1, 1), InvRes(w, 2 * w, 2, 4),
                        InvRes(2 * w, 2 * w, 1, 4), InvRes(2 * w, 3 * w, 2, 4),
                        InvRes(3 * w, 3 * w, 1, 4), *_cbr(nn, 3 * w, 8 * w, 1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * w, classes))
    return net, (1, 3, res, res)


def resnet(res=24, w=8, classes=10):
    """ResNet with 1x1 strided downsampling shortcuts."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, s):
            super().__init__()
            self.a = nn.Sequential(*_cbr(nn, cin, cout, 3, s, act="relu"),
                                   *_cbr(nn, cout, cout, 3, 1, act=None))
            self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, s), nn.BatchNorm2d(cout))
                         if s != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.a(x) + self.skip(x))
    net = nn.Sequential(*_cbr(nn, 3, w, 3, 1, act="relu"), Block(w, w, 1), Block(w, 2 * w, 2),
                        Block(2 * w, 4 * w, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4 * w, classes))
    return net, (1, 3, res, res)


def tiny_8x8(classes=10):
    """The smallest input: 8x8 single channel."""
    from torch import nn
    net = nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3),
                        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 2 * 2, classes), nn.Softmax(-1))
    return net, (1, 1, 8, 8)


ZOO = {
    "fc_autoencoder_640": fc_autoencoder,
    "mobilenet_v2_32": mobilenet_v2,
    "resnet_24": resnet,
    "tiny_8x8": tiny_8x8,
}
BENCH = ("fc_autoencoder_640", "mobilenet_v2_32", "resnet_24")   # in `mcu bench`


def zoo_module(name: str, seed: int = 0):
    """(module in eval mode, input shape) with seeded weights and BatchNorm statistics."""
    import torch
    from torch import nn
    torch.manual_seed(seed)
    m, shape = ZOO[name]()
    g = torch.Generator().manual_seed(seed)
    for b in m.modules():
        if isinstance(b, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = b.num_features
            b.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            b.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            b.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            b.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return m.eval(), shape

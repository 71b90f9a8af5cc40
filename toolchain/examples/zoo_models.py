"""The model zoo (issue #12): architectures nobody tuned for, as PyTorch modules with
seeded random weights and non-trivial BatchNorm statistics, the shapes users bring to
microcontrollers. `tests/zoo.py` runs all of them through the suite; `mcu bench` measures
the BENCH ones.

    module, shape = zoo_module("fc_autoencoder_640")     # eval mode; shape as PyTorch feeds it

Only torch here (the bottom layer): callers export, quantize and write the .tflite.
"""
from __future__ import annotations

import functools


def _nn():
    import torch
    from torch import nn
    return torch, nn


def _cbr(nn, cin, cout, k=3, s=1, groups=1, act="relu6", d=1):
    layers = [nn.Conv2d(cin, cout, k, s, padding=d * (k // 2), dilation=d, groups=groups,
                        bias=False), nn.BatchNorm2d(cout)]
    if act == "relu6":
        layers.append(nn.ReLU6())
    elif act == "relu":
        layers.append(nn.ReLU())
    return layers


def mobilenet_v1(alpha=0.25, res=96, classes=2):
    """MobileNetV1 (visual wake words shape): stride-2 depthwise separable blocks."""
    torch, nn = _nn()
    c = lambda n: max(8, int(n * alpha))  # noqa: E731
    cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    layers = _cbr(nn, 3, c(32), 3, 2)
    cin = c(32)
    for cout, s in cfg:
        layers += _cbr(nn, cin, cin, 3, s, groups=cin) + _cbr(nn, cin, c(cout), 1)
        cin = c(cout)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes), nn.Softmax(-1)]
    return nn.Sequential(*layers), (1, 3, res, res)


def mobilenet_v2(res=32, classes=10, width=8):
    """MobileNetV2: 1x1 expansion, depthwise, linear bottleneck, inverted residuals."""
    torch, nn = _nn()

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
    w = width
    net = nn.Sequential(*_cbr(nn, 3, w, 3, 2), InvRes(w, w, 1, 1), InvRes(w, 2 * w, 2, 4),
                        InvRes(2 * w, 2 * w, 1, 4), InvRes(2 * w, 3 * w, 2, 4),
                        InvRes(3 * w, 3 * w, 1, 4), *_cbr(nn, 3 * w, 8 * w, 1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * w, classes))
    return net, (1, 3, res, res)


def ds_cnn(h=49, w=10, c=32, blocks=3, classes=12, k=(10, 4)):
    """DS-CNN keyword spotting (MLPerf Tiny KWS shape), smaller."""
    torch, nn = _nn()
    layers = [nn.Conv2d(1, c, k, (2, 2), padding=(k[0] // 2, k[1] // 2)), nn.BatchNorm2d(c),
              nn.ReLU()]
    for _ in range(blocks):
        layers += _cbr(nn, c, c, 3, 1, groups=c, act="relu") + _cbr(nn, c, c, 1, act="relu")
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes), nn.Softmax(-1)]
    return nn.Sequential(*layers), (1, 1, h, w)


def resnet(res=24, w=8, classes=10):
    """ResNet with 1x1 strided downsampling shortcuts."""
    torch, nn = _nn()

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


def fc_autoencoder(n=640, hidden=128, bottleneck=8, depth=2):
    """Anomaly-detection autoencoder (MLPerf Tiny AD shape): 640 -> 128 ... -> 640."""
    torch, nn = _nn()
    dims = [n] + [hidden] * depth + [bottleneck] + [hidden] * depth + [n]
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers += [nn.BatchNorm1d(dims[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers), (1, n)


def inception(res=16, classes=5):
    """Multi-branch concat: 1x1, 3x3, 5x5 and pool branches (same output quantization)."""
    torch, nn = _nn()

    class Mixed(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.b1 = nn.Sequential(*_cbr(nn, cin, 8, 1, act="relu"))
            self.b3 = nn.Sequential(*_cbr(nn, cin, 6, 1, act="relu"), *_cbr(nn, 6, 8, 3, act="relu"))
            self.b5 = nn.Sequential(*_cbr(nn, cin, 4, 1, act="relu"), *_cbr(nn, 4, 8, 5, act="relu"))
            self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_cbr(nn, cin, 8, 1, act="relu"))

        def forward(self, x):
            return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)
    net = nn.Sequential(*_cbr(nn, 3, 12, 3, 2, act="relu"), Mixed(12), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(32, classes))
    return net, (1, 3, res, res)


def squeeze_excite(res=12, c=16, classes=4):
    """Squeeze-and-excite: MEAN -> FC -> FC -> sigmoid gate -> MUL."""
    torch, nn = _nn()

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.f = nn.Sequential(nn.Linear(c, c // 4), nn.ReLU(), nn.Linear(c // 4, c),
                                   nn.Sigmoid())

        def forward(self, x):
            s = self.f(x.mean(dim=(2, 3)))
            return x * s.reshape(s.shape[0], -1, 1, 1)
    net = nn.Sequential(*_cbr(nn, 3, c, 3, 1, act="relu"), SE(c), *_cbr(nn, c, c, 3, 2, act="relu"),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))
    return net, (1, 3, res, res)


def big_kernels(res=20, classes=3):
    """7x7 and 5x5 kernels, a dilated 3x3, odd channel counts (1, 3, 5)."""
    torch, nn = _nn()
    net = nn.Sequential(nn.Conv2d(1, 5, 7, 1, 3), nn.ReLU(), nn.Conv2d(5, 3, 5, 2, 2), nn.ReLU(),
                        nn.Conv2d(3, 5, 3, 1, padding=2, dilation=2), nn.ReLU(),
                        nn.Flatten(), nn.Linear(5 * 10 * 10, classes))
    return net, (1, 1, res, res)


def rect_input(h=24, w=9, classes=4):
    """H != W, channel counts not multiples of 4, strides differing per axis."""
    torch, nn = _nn()
    net = nn.Sequential(nn.Conv2d(3, 5, (5, 3), (2, 1), (2, 1)), nn.ReLU6(),
                        nn.Conv2d(5, 5, 3, 1, 1, groups=5), nn.ReLU(), nn.Conv2d(5, 7, 1),
                        nn.AvgPool2d((2, 3)), nn.Flatten(), nn.Linear(7 * 6 * 3, classes))
    return net, (1, 3, h, w)


def pooling_zoo(res=17):
    """Pooling of every kind: max/avg, VALID and padded, strided, global avg/max."""
    torch, nn = _nn()

    class Pools(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 8, 3, 1, 1)
            self.m1 = nn.MaxPool2d(3, 2, 1)
            self.a1 = nn.AvgPool2d(2, 2)
            self.m2 = nn.MaxPool2d(2, 1)
            self.a2 = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
            self.g, self.gm = nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)

        def forward(self, x):
            x = torch.relu(self.c(x))
            x = self.a2(self.m2(self.a1(self.m1(x))))
            return torch.cat([self.g(x), self.gm(x)], 1).flatten(1)
    return Pools(), (1, 3, res, res)


def tiny_8x8(classes=10):
    """The smallest input: 8x8 single channel."""
    torch, nn = _nn()
    net = nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3),
                        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 2 * 2, classes), nn.Softmax(-1))
    return net, (1, 1, 8, 8)


def mlp(n=32, classes=5):
    torch, nn = _nn()
    return nn.Sequential(nn.Linear(n, 64), nn.ReLU(), nn.Linear(64, 48), nn.ReLU6(),
                         nn.Linear(48, classes)), (1, n)


def padded_conv(res=14):
    """Explicit asymmetric zero padding (PAD) before a VALID conv, as Keras exports do."""
    torch, nn = _nn()
    net = nn.Sequential(nn.ZeroPad2d((1, 2, 0, 1)), nn.Conv2d(3, 6, 3, 2), nn.ReLU(),
                        nn.Flatten(), nn.Linear(6 * 7 * 8, 4))
    return net, (1, 3, res, res)


def conv1d_mfcc(steps=64, feats=10, c=16, blocks=3, classes=12):
    """1-D conv KWS on MFCC-like features (N, 10, 64): Conv1d / BatchNorm1d / ReLU /
    MaxPool1d blocks, AdaptiveAvgPool1d(1) + Linear head."""
    torch, nn = _nn()
    layers, cin = [], feats
    for i in range(blocks):
        cout = c * (i + 1)
        layers += [nn.Conv1d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm1d(cout),
                   nn.ReLU(), nn.MaxPool1d(2)]
        cin = cout
    layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(cin, classes), nn.Softmax(-1)]
    return nn.Sequential(*layers), (1, feats, steps)


def conv1d_dw_long(steps=400, feats=13, c=24, classes=6):
    """A longer 1-D audio net: strided Conv1d front end, depthwise-separable Conv1d blocks
    (one strided, one dilated), AvgPool1d, AdaptiveMaxPool1d(1), flatten + Linear."""
    torch, nn = _nn()

    def dws(cin, cout, k, s=1, d=1):
        return [nn.Conv1d(cin, cin, k, s, padding=d * (k // 2), dilation=d, groups=cin,
                          bias=False), nn.BatchNorm1d(cin), nn.ReLU(),
                nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout), nn.ReLU()]
    net = nn.Sequential(nn.Conv1d(feats, c, 8, 4, padding=2), nn.BatchNorm1d(c), nn.ReLU(),
                        *dws(c, c, 9), *dws(c, 2 * c, 5, 2), nn.AvgPool1d(2),
                        *dws(2 * c, 2 * c, 3, d=2), nn.AdaptiveMaxPool1d(1), nn.Flatten(),
                        nn.Linear(2 * c, classes))
    return net, (1, feats, steps)


def unet_decoder(res=16, c=8):
    """A small U-Net-like conv autoencoder: two stride-2 encoder stages, a ConvTranspose2d
    k4 s2 p1 up-stage (TFLite SAME), skip concatenation, a nearest nn.Upsample x2 and a
    ConvTranspose2d k3 s2 p1 output_padding 1 (a cropped full result) back to the input
    size. TRANSPOSE_CONV, RESIZE_NEAREST_NEIGHBOR, STRIDED_SLICE, CONCATENATION."""
    torch, nn = _nn()

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.e1 = nn.Sequential(*_cbr(nn, 1, c, 3, 2, act="relu"))          # res/2
            self.e2 = nn.Sequential(*_cbr(nn, c, 2 * c, 3, 2, act="relu"))      # res/4
            self.u1 = nn.ConvTranspose2d(2 * c, c, 4, 2, 1)                    # res/2
            self.m = nn.Sequential(*_cbr(nn, 2 * c, c, 3, 1, act="relu"))
            self.up = nn.Upsample(scale_factor=2, mode="nearest")             # res
            self.d = nn.Sequential(*_cbr(nn, c, c, 3, 2, act="relu"))          # res/2
            self.out = nn.ConvTranspose2d(c, 1, 3, 2, 1, output_padding=1)    # res

        def forward(self, x):
            s1 = self.e1(x)
            y = torch.relu(self.u1(self.e2(s1)))
            y = self.up(self.m(torch.cat([y, s1], 1)))
            return self.out(self.d(y))

    return UNet(), (1, 1, res, res)


ZOO = {
    "mobilenet_v1_96": functools.partial(mobilenet_v1, 0.25, 96),
    "mobilenet_v1_48_a05": functools.partial(mobilenet_v1, 0.5, 48, 3),
    "mobilenet_v2_32": functools.partial(mobilenet_v2, 32),
    "mobilenet_v2_48_w4": functools.partial(mobilenet_v2, 48, 6, 4),
    "ds_cnn_kws": ds_cnn,
    "ds_cnn_wide": functools.partial(ds_cnn, 32, 16, 48, 2, 8, (3, 3)),
    "resnet_24": resnet,
    "resnet_32_w4": functools.partial(resnet, 32, 4, 6),
    "fc_autoencoder_640": fc_autoencoder,
    "fc_autoencoder_shallow": functools.partial(fc_autoencoder, 128, 64, 16, 1),
    "inception_16": inception,
    "squeeze_excite": squeeze_excite,
    "big_kernels": big_kernels,
    "rect_input": rect_input,
    "pooling_zoo": pooling_zoo,
    "tiny_8x8": tiny_8x8,
    "mlp": mlp,
    "padded_conv": padded_conv,
    "ds_cnn_rect": functools.partial(ds_cnn, 20, 13, 8, 1, 3, (5, 3)),
    "mobilenet_v2_64_w3": functools.partial(mobilenet_v2, 64, 4, 3),
    "conv1d_mfcc_64x10": conv1d_mfcc,
    "conv1d_dw_long_400": conv1d_dw_long,
    "unet_decoder_16": unet_decoder,
}


def _randomize_bn(module, seed):
    """Non-trivial BatchNorm statistics (so folding is exercised), seeded."""
    torch, nn = _nn()
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def zoo_module(name: str, seed: int = 0):
    torch, _ = _nn()
    torch.manual_seed(seed)
    m, shape = ZOO[name]()
    _randomize_bn(m, seed)
    return m.eval(), shape


BENCH = ("fc_autoencoder_640", "mobilenet_v2_32", "resnet_24")   # in `mcu bench`

"""A harder offline digits task for the subnets benchmark: sklearn's 8x8 digits
upsampled to 16x16, each image moved by its own deterministic random affine
transform (rotation, scale, shear, shift) and given Gaussian noise. A small CNN
reaches ~95 % on it (plain digits: ~99 %), so sparse levels visibly differ.

`digits16_data(seed)` -> (x_train, y_train, x_test, y_test), float32 NCHW
[N, 1, 16, 16]; the same seed gives the same bytes (no downloads, no randomness
outside the seeded generator). `make_digits16_cnn(width)` is the benchmark's CNN:
conv3x3 1->w (+BN+ReLU), max pool, conv3x3 w->2w, max pool, conv3x3 2w->4w,
avg pool, fc 16w->64 (+ReLU), fc 64->10; it returns logits.
`train_dense(model, data, epochs, seed)` trains it from scratch.
"""
from __future__ import annotations

import numpy as np


def _affine_thetas(n: int, rng: np.random.Generator, strength: float) -> np.ndarray:
    rot = rng.uniform(-0.35, 0.35, n) * strength                 # ±20° at strength 1
    scale = np.exp(rng.uniform(-0.15, 0.15, n) * strength)
    shear = rng.uniform(-0.25, 0.25, n) * strength
    shift = rng.uniform(-0.15, 0.15, (n, 2)) * strength          # grid units: ±1.2 px
    c, s = np.cos(rot), np.sin(rot)
    th = np.zeros((n, 2, 3))
    th[:, 0, 0] = c / scale
    th[:, 0, 1] = (-s + shear * c) / scale
    th[:, 1, 0] = s / scale
    th[:, 1, 1] = (c + shear * s) / scale
    th[:, :, 2] = shift
    return th


def digits16_data(seed: int = 0, test_fraction: float = 0.25, strength: float = 0.5,
                  noise: float = 0.15, test_copies: int = 1):
    """test_copies > 1 draws that many transformed copies of every test digit (a larger,
    less noisy test set; the test digits are still never seen in training)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    d = load_digits()
    x8 = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]      # N,1,8,8
    x16 = F.interpolate(x8, size=(16, 16), mode="bilinear", align_corners=False)
    rng = np.random.default_rng(seed)

    def transform(x):
        th = torch.from_numpy(_affine_thetas(len(x), rng, strength).astype(np.float32))
        grid = F.affine_grid(th, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = x.numpy() + rng.normal(0.0, noise, x.shape).astype(np.float32)
        return np.clip(x, -0.5, 1.5).astype(np.float32)

    x = transform(x16)
    y = d.target.astype(np.int64)
    idx = rng.permutation(len(x))
    n_test = int(len(x) * test_fraction)
    te, tr = idx[:n_test], idx[n_test:]
    x_te, y_te = x[te], y[te]
    if test_copies > 1:
        extra = [transform(x16[torch.from_numpy(te)]) for _ in range(test_copies - 1)]
        x_te = np.concatenate([x_te] + extra)
        y_te = np.concatenate([y_te] * test_copies)
    return (np.ascontiguousarray(x[tr]), y[tr], np.ascontiguousarray(x_te), y_te)


def make_digits16_cnn(width: int = 16, hidden: int = 64):
    import torch
    from torch import nn

    w = width

    class Digits16CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, w, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(w)
            self.conv2 = nn.Conv2d(w, 2 * w, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(2 * w)
            self.conv3 = nn.Conv2d(2 * w, 4 * w, 3, padding=1, bias=False)
            self.bn3 = nn.BatchNorm2d(4 * w)
            self.fc1 = nn.Linear(4 * w * 2 * 2, hidden)
            self.fc2 = nn.Linear(hidden, 10)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = nn.functional.max_pool2d(x, 2)                 # 8x8
            x = torch.relu(self.bn2(self.conv2(x)))
            x = nn.functional.max_pool2d(x, 2)                 # 4x4
            x = torch.relu(self.bn3(self.conv3(x)))
            x = nn.functional.avg_pool2d(x, 2)                 # 2x2
            x = torch.relu(self.fc1(torch.flatten(x, 1)))
            return self.fc2(x)

    return Digits16CNN()


def train_dense(model, data, epochs: int = 30, seed: int = 0, lr: float = 3e-3,
                batch: int = 64):
    """Adam + cosine schedule, cross entropy on the logits; returns model.eval()."""
    import torch
    torch.manual_seed(seed)
    x_tr, y_tr = torch.from_numpy(data[0]), torch.from_numpy(data[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x_tr), generator=g)
        for i in range(0, len(perm), batch):
            b = perm[i:i + batch]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x_tr[b]), y_tr[b]).backward()
            opt.step()
        sched.step()
    return model.eval()


def accuracy(model, x, y) -> float:
    import torch
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())

"""A tiny CNN on sklearn's 8x8 digits (offline data), trained in a few seconds on CPU.

`train_digits_cnn(seed)` -> (module in eval mode, (x_train, y_train, x_test, y_test)),
inputs float32 NCHW [N, 1, 8, 8] scaled to [0, 1]. The module's output is the
softmax over 10 classes. Layers: conv3x3+BN+ReLU, depthwise 3x3+BN+ReLU6,
conv1x1+BN+ReLU, max pool, average pool, flatten, fully connected, softmax:
the op families of MLPerf Tiny models.
"""
from __future__ import annotations

import numpy as np


def digits_data(seed: int = 0, test_fraction: float = 0.25):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]          # N,1,8,8
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    n_test = int(len(x) * test_fraction)
    te, tr = idx[:n_test], idx[n_test:]
    return x[tr], y[tr], x[te], y[te]


def make_digits_cnn():
    import torch
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
            self.bn2 = nn.BatchNorm2d(16)
            self.pw = nn.Conv2d(16, 32, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(32)
            self.fc = nn.Linear(32 * 2 * 2, 10)

        def logits(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = nn.functional.relu6(self.bn2(self.dw(x)))
            x = torch.relu(self.bn3(self.pw(x)))
            x = nn.functional.max_pool2d(x, 2)                 # 4x4
            x = nn.functional.avg_pool2d(x, 2)                 # 2x2
            return self.fc(torch.flatten(x, 1))

        def forward(self, x):
            return torch.softmax(self.logits(x), dim=1)

    return DigitsCNN()


def make_digits_cnn_m(hidden: int = 128):
    """A larger, over-parameterised digits CNN for the patch benchmark (57,232 conv/fc
    weights, 250 biases after BN folding): conv3x3 1->16, conv3x3 16->32, max pool,
    conv3x3 32->64, max pool, fc 256->hidden, fc hidden->10 (BN + ReLU after each conv,
    ReLU after the hidden fc). Compute stays small (~0.6 M MAC/inference) because the
    extra weights sit where the feature maps are small."""
    import torch
    from torch import nn

    class DigitsCNNM(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(32)
            self.conv3 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
            self.bn3 = nn.BatchNorm2d(64)
            self.fc1 = nn.Linear(64 * 2 * 2, hidden)
            self.fc2 = nn.Linear(hidden, 10)

        def logits(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.relu(self.bn2(self.conv2(x)))
            x = nn.functional.max_pool2d(x, 2)                 # 4x4
            x = torch.relu(self.bn3(self.conv3(x)))
            x = nn.functional.max_pool2d(x, 2)                 # 2x2
            x = torch.relu(self.fc1(torch.flatten(x, 1)))
            return self.fc2(x)

        def forward(self, x):
            return torch.softmax(self.logits(x), dim=1)

    return DigitsCNNM()


def train_digits_cnn(seed: int = 0, epochs: int = 40):
    """Train the digits CNN; returns (module.eval(), (x_train, y_train, x_test, y_test))."""
    import torch
    torch.manual_seed(seed)
    data = digits_data(seed)
    x_tr, y_tr = torch.from_numpy(data[0]), torch.from_numpy(data[1])
    model = make_digits_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    g = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(x_tr), generator=g)
            for i in range(0, len(perm), 64):
                b = perm[i:i + 64]
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model.logits(x_tr[b]), y_tr[b])
                loss.backward()
                opt.step()
            sched.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval(), data


def accuracy(model, x, y) -> float:
    import torch
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())

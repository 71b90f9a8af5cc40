"""Helpers of the SNN tests: small snnTorch models with seeded random weights, their own
simulation (the reference for spike counts) and their NIR export."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
snn = pytest.importorskip("snntorch")
pytest.importorskip("nir")
pytest.importorskip("nirtorch")

import snntorch.utils  # noqa: E402
from snntorch.export_nir import export_to_nir  # noqa: E402


def leaky(shape, beta, thr, reset, output=False):
    """An snn.Leaky with per-neuron tensors (snnTorch's exporter needs them)."""
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.full(shape, thr),
                     init_hidden=True, reset_mechanism=reset, output=output)


def synaptic(shape, alpha, beta, thr, reset, output=False):
    return snn.Synaptic(alpha=torch.full(shape, alpha), beta=torch.full(shape, beta),
                        threshold=torch.full(shape, thr), init_hidden=True,
                        reset_mechanism=reset, output=output)


def mlp(reset="zero", sizes=(10, 16, 5), seed=0, neuron="leaky", gain=3.0):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        fc = torch.nn.Linear(a, b)
        with torch.no_grad():
            fc.weight.mul_(gain)
        last = i == len(sizes) - 2
        if neuron == "synaptic" and last:
            nrn = synaptic((b,), 0.7, 0.9, 0.5, reset, output=True)
        else:
            nrn = leaky((b,), 0.85 if i % 2 == 0 else 0.9, 1.0 if i % 2 == 0 else 0.5,
                        reset, output=last)
        layers += [fc, nrn]
    return torch.nn.Sequential(*layers)


def conv_net(reset="zero", pool="avg", seed=0, in_shape=(1, 8, 8), ch=4, out=5, gain=2.0):
    torch.manual_seed(seed)
    c, h, w = in_shape
    conv = torch.nn.Conv2d(c, ch, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(gain)
    pl = torch.nn.AvgPool2d(2)
    fc = torch.nn.Linear(ch * (h // 2) * (w // 2), out)
    with torch.no_grad():
        fc.weight.mul_(gain * 2)
    return torch.nn.Sequential(conv, leaky((ch, h, w), 0.85, 1.0, reset), pl,
                               torch.nn.Flatten(), fc, leaky((out,), 0.9, 0.5, reset, True))


def snntorch_counts(net, x: np.ndarray, timesteps: int, inputs=None):
    """snnTorch's own simulation: spike counts of the output layer, per sample.
    inputs: optional [T, N, ...] per-step inputs (else x every step)."""
    snntorch.utils.reset(net)
    xt = torch.as_tensor(np.asarray(x, np.float32))
    cnt = 0
    with torch.no_grad():
        for t in range(timesteps):
            xi = xt if inputs is None else torch.as_tensor(np.asarray(inputs[t], np.float32))
            out = net(xi)
            spk = out[0]
            cnt = cnt + spk
    return cnt.numpy()


def export(net, in_shape):
    return export_to_nir(net, torch.zeros(1, *in_shape), ignore_dims=[0])


def digits(n_train=1200):
    """sklearn digits scaled to [0, 1]: (x_train, y_train, x_test, y_test), x [N, 64]."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def train_digits_mlp(timesteps=8, epochs=8, hidden=32, reset="subtract", seed=0, batch=150):
    """A small Leaky MLP trained on digits with constant-current input (~5 s on one
    thread; more threads are much slower on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(timesteps, epochs, hidden, reset, seed, batch)
    finally:
        torch.set_num_threads(threads)


def _train(timesteps, epochs, hidden, reset, seed, batch):
    torch.manual_seed(seed)
    xtr, ytr, xte, yte = digits()
    from snntorch import surrogate
    sg = surrogate.fast_sigmoid(slope=25)

    def lk(n, out=False):
        return snn.Leaky(beta=torch.full((n,), 0.9), threshold=torch.ones(n), init_hidden=True,
                         reset_mechanism=reset, output=out, spike_grad=sg)
    net = torch.nn.Sequential(torch.nn.Linear(64, hidden), lk(hidden),
                              torch.nn.Linear(hidden, 10), lk(10, True))
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    X, Y = torch.as_tensor(xtr), torch.as_tensor(ytr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), batch):
            idx = perm[i:i + batch]
            snntorch.utils.reset(net)
            cnt = 0
            for _t in range(timesteps):
                cnt = cnt + net(X[idx])[0]
            loss = torch.nn.functional.cross_entropy(cnt, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net, (xtr, ytr, xte, yte)

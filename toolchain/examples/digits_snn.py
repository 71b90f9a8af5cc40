"""Small spiking networks trained in snnTorch on sklearn's 8x8 digits (seconds on one
CPU thread), and their NIR export: the models of the README's "Spiking networks"
walkthrough and of tests/test_snn_cli.py.

    net, (xtr, ytr, xte, yte) = train_digits_snn("mlp", timesteps=10)
    export_nir(net, (64,), "digits_snn.nir")          # then: mcu convert digits_snn.nir ...

"mlp": Linear(64, 32) -> Leaky -> Linear(32, 10) -> Leaky, inputs [N, 64];
"conv": Conv2d(1, 8, 3, padding=1) -> Leaky -> AvgPool2d(2) -> Flatten -> Linear(128, 10)
-> Leaky, inputs [N, 1, 8, 8]. Leaky neurons with beta 0.9, threshold 1 and snnTorch's
default subtract reset (the exporter writes v_reset = 0 for every Leaky, so convert with
--reset subtract); per-neuron beta/threshold tensors because the exporter needs them.
Constant-current input, trained on the output spike counts (cross-entropy).
"""
from __future__ import annotations

import numpy as np

from toolchain.examples.digits import digits_data


def make_digits_snn(kind: str = "mlp", hidden: int = 32):
    import snntorch as snn
    import torch
    from snntorch import surrogate
    sg = surrogate.fast_sigmoid(slope=25)

    def leaky(shape, out=False):
        return snn.Leaky(beta=torch.full(shape, 0.9), threshold=torch.ones(shape),
                         init_hidden=True, reset_mechanism="subtract", output=out,
                         spike_grad=sg)
    nn = torch.nn
    if kind == "mlp":
        return nn.Sequential(nn.Linear(64, hidden), leaky((hidden,)), nn.Linear(hidden, 10),
                             leaky((10,), True))
    if kind == "conv":
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), leaky((8, 8, 8)), nn.AvgPool2d(2),
                             nn.Flatten(), nn.Linear(8 * 4 * 4, 10), leaky((10,), True))
    raise ValueError(f"unknown kind {kind!r}: mlp or conv")


def train_digits_snn(kind: str = "mlp", timesteps: int = 10, epochs: int = 8, seed: int = 0,
                     batch: int = 128, lr: float = 2e-2):
    """-> (module in eval mode, (x_train, y_train, x_test, y_test)); x float32 in [0, 1],
    [N, 64] for "mlp", [N, 1, 8, 8] for "conv"."""
    import snntorch.utils as sutils
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)       # more threads are slower on a small shared machine
    try:
        torch.manual_seed(seed)
        xtr, ytr, xte, yte = digits_data(seed)
        if kind == "mlp":
            xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
        net = make_digits_snn(kind)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        X, Y = torch.as_tensor(xtr), torch.as_tensor(ytr)
        g = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            perm = torch.randperm(len(X), generator=g)
            for i in range(0, len(X), batch):
                idx = perm[i:i + batch]
                sutils.reset(net)
                cnt = 0
                for _t in range(timesteps):
                    cnt = cnt + net(X[idx])[0]
                loss = torch.nn.functional.cross_entropy(cnt, Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        sutils.reset(net)
        return net.eval(), (xtr, ytr, xte, yte)
    finally:
        torch.set_num_threads(threads)


def export_nir(net, input_shape, path) -> str:
    """snnTorch module -> NIR file (snntorch.export_to_nir, batch dimension ignored)."""
    import warnings

    import nir
    import snntorch.utils as sutils
    import torch
    from snntorch.export_nir import export_to_nir
    sutils.reset(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        graph = export_to_nir(net, torch.zeros(1, *input_shape), ignore_dims=[0])
    sutils.reset(net)
    nir.write(str(path), graph)
    return str(path)


def accuracy(net, x, y, timesteps: int) -> float:
    """snnTorch's own simulation: argmax of the output spike counts."""
    import snntorch.utils as sutils
    import torch
    sutils.reset(net)
    with torch.no_grad():
        xt = torch.as_tensor(np.asarray(x, np.float32))
        cnt = sum(net(xt)[0] for _ in range(timesteps))
    sutils.reset(net)
    return float((cnt.argmax(1).numpy() == np.asarray(y)).mean())

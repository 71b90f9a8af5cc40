"""Accuracy of int16 activations ("16x8") against int8 on regression-like tasks.

Two small float models are trained with PyTorch (seeded, a few seconds on a CPU), then
quantized post-training by our PTQ twice, with int8 and with int16 activations (int8
weights both times), and run in the reference interpreter (bit-exact with tflite-micro,
checked on a few inputs here too). Errors are against the float model and against the
ground truth on held-out inputs:

- mlp: 4 -> 64 -> 64 -> 1 MLP fit to a smooth function of 4 inputs;
- conv1d: a 1-D conv net (Conv1d/ReLU, as CONV_2D with H = 1) denoising a sum of
  sines, 64 samples in, 64 out, at levels spread over 40 dB (amplitudes 0.01 to 1, as
  audio is): int8's one scale for all levels rounds the quiet signals away.

`rmse_vs_float` is over all test outputs; `rel_rmse_vs_float` normalises each sample's
error by that sample's float output RMS (what a quiet input loses).

    .venv/bin/python tests/bench_int16_accuracy.py [--json bench-results/int16_accuracy.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def _smooth(x: np.ndarray) -> np.ndarray:
    return (np.sin(2.0 * x[:, 0]) * np.cos(1.5 * x[:, 1]) + 0.3 * x[:, 2] ** 2
            - 0.2 * x[:, 3] + 0.1 * x[:, 0] * x[:, 3])[:, None].astype(np.float32)


def _mlp_task(rng, n_train: int):
    import torch
    x = rng.uniform(-1.5, 1.5, size=(n_train + 512, 4)).astype(np.float32)
    y = _smooth(x)
    m = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                            torch.nn.ReLU(), torch.nn.Linear(64, 1))
    return m, x[:n_train], y[:n_train], x[n_train:], y[n_train:], (1, 4)


def _conv1d_task(rng, n_train: int):
    import torch
    t = np.linspace(0, 1, 64, dtype=np.float32)
    f = rng.uniform(1, 4, size=(n_train + 256, 2)).astype(np.float32)
    ph = rng.uniform(0, 2 * np.pi, size=(n_train + 256, 2)).astype(np.float32)
    clean = (np.sin(2 * np.pi * f[:, :1] * t + ph[:, :1])
             + 0.5 * np.sin(2 * np.pi * f[:, 1:] * t + ph[:, 1:])).astype(np.float32)
    noisy = clean + 0.2 * rng.standard_normal(clean.shape).astype(np.float32)
    level = np.exp(rng.uniform(np.log(0.01), np.log(1.0), size=(n_train + 256, 1)))
    x = (noisy * level).astype(np.float32)[:, None, :]
    y = (clean * level).astype(np.float32)[:, None, :]
    m = torch.nn.Sequential(torch.nn.Conv1d(1, 16, 5, padding=2), torch.nn.ReLU(),
                            torch.nn.Conv1d(16, 16, 5, padding=2), torch.nn.ReLU(),
                            torch.nn.Conv1d(16, 1, 5, padding=2))
    return m, x[:n_train], y[:n_train], x[n_train:], y[n_train:], (1, 1, 64)


TASKS = {"mlp": _mlp_task, "conv1d": _conv1d_task}


def _train(m, x, y, steps: int, seed: int):
    import torch
    torch.set_num_threads(1)            # tiny models: threads only contend on a busy machine
    torch.manual_seed(seed)
    for p in m.parameters():            # seeded re-initialisation (module order)
        if p.dim() > 1:
            torch.nn.init.kaiming_uniform_(p, a=5 ** 0.5)
        else:
            torch.nn.init.uniform_(p, -0.1, 0.1)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (128,), generator=g)
        opt.zero_grad()
        loss = torch.mean((m(xt[idx]) - yt[idx]) ** 2)
        loss.backward()
        opt.step()
    return m.eval()


def _to_model_layout(g, x: np.ndarray) -> np.ndarray:
    """Inputs as the IR graph takes them (NHWC; N,1,L,C for 1-D conv nets)."""
    want = tuple(g.t(g.inputs[0]).shape[1:])
    if x.ndim == 3:                                   # (N, C, L) -> (N, 1, L, C)
        x = np.transpose(x, (0, 2, 1))[:, None]
    return np.ascontiguousarray(x.reshape((len(x),) + want), np.float32)


def run_task(name: str, seed: int = 0, steps: int = 1500, n_train: int = 4096,
             check_tflm: int = 2) -> dict:
    import torch
    from converters import from_torch
    from converters.quantize import dequantize_output, quantize, quantize_input, run_int8
    from toolchain.ir import reference
    from toolchain.ir.float_eval import run_float
    rng = np.random.default_rng(seed)
    t0 = time.time()
    m, xtr, ytr, xte, yte, in_shape = TASKS[name](rng, n_train)
    m = _train(m, xtr, ytr, steps, seed)
    train_s = time.time() - t0
    g = from_torch(m, torch.zeros(in_shape))
    calib = _to_model_layout(g, xtr[:512])
    xe = _to_model_layout(g, xte)
    yf = run_float(g, xe)[g.outputs[0]].reshape(len(xe), -1)
    truth = yte.reshape(len(xe), -1)
    res = dict(task=name, seed=seed, train_steps=steps, train_seconds=round(train_s, 2),
               test_samples=int(len(xe)),
               float=dict(rmse_vs_truth=float(np.sqrt(np.mean((yf - truth) ** 2)))),
               output_range=float(yf.max() - yf.min()))
    for act in ("int8", "int16"):
        q = quantize(g, calib, activations=act)
        yq = dequantize_output(q, run_int8(q, xe)).reshape(len(xe), -1)
        err = yq - yf
        rel = np.sqrt(np.mean(err ** 2, axis=1)) / np.maximum(
            np.sqrt(np.mean(yf ** 2, axis=1)), 1e-12)
        res[act] = dict(rmse_vs_float=float(np.sqrt(np.mean(err ** 2))),
                        rel_rmse_vs_float=float(np.mean(rel)),
                        max_abs_vs_float=float(np.abs(err).max()),
                        rmse_vs_truth=float(np.sqrt(np.mean((yq - truth) ** 2))))
        if check_tflm:
            from toolchain.tflm_oracle import TflmRunner
            from converters.tflite_writer import write_tflite
            r = TflmRunner(write_tflite(q))
            xq = quantize_input(q, xe[:check_tflm])
            same = all(np.array_equal(np.asarray(r.run([xq[i:i + 1]])[0]).reshape(-1),
                                      reference.run(q, xq[i:i + 1])[q.outputs[0]].reshape(-1))
                       for i in range(len(xq)))
            res[act]["tflm_bit_exact"] = bool(same)
    res["error_ratio_int8_over_int16"] = (res["int8"]["rmse_vs_float"]
                                          / max(res["int16"]["rmse_vs_float"], 1e-30))
    res["rel_error_ratio_int8_over_int16"] = (res["int8"]["rel_rmse_vs_float"]
                                              / max(res["int16"]["rel_rmse_vs_float"], 1e-30))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default="bench-results/int16_accuracy.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1500)
    a = ap.parse_args(argv)
    out = dict(what="int16 vs int8 activations (int8 weights both), PTQ minmax, reference "
                    "interpreter (bit-exact with tflite-micro)", results=[])
    for name in TASKS:
        r = run_task(name, a.seed, a.steps)
        out["results"].append(r)
        print(f"{name:7s} float rmse vs truth {r['float']['rmse_vs_truth']:.5f} | vs float: "
              f"int8 rmse {r['int8']['rmse_vs_float']:.6f} (max {r['int8']['max_abs_vs_float']:.5f})"
              f", int16 rmse {r['int16']['rmse_vs_float']:.6f} "
              f"(max {r['int16']['max_abs_vs_float']:.5f}) -> {r['error_ratio_int8_over_int16']:.1f}x"
              f" lower; per-sample relative: int8 {r['int8']['rel_rmse_vs_float']:.4f}, int16 "
              f"{r['int16']['rel_rmse_vs_float']:.4f} ({r['rel_error_ratio_int8_over_int16']:.1f}x)"
              f" | vs truth: int8 {r['int8']['rmse_vs_truth']:.5f}, int16 "
              f"{r['int16']['rmse_vs_truth']:.5f}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

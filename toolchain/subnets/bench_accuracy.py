"""Accuracy half of the subnets benchmark (issue #10): nested joint training vs K
independently pruned-and-fine-tuned models vs the dense model, per level.

    python -m toolchain.subnets.bench_accuracy [--quick] [--json PATH] [--seeds N]

Task: toolchain.examples.digits16 (sklearn digits, 16x16, random affine + noise; no
download; the 449 held-out digits drawn 4 times for a 1796-image test set), its small CNN
at width 8 (conv 1->8, 8->16, 16->32, fc 128->32, 32->10; BN after each conv; ~8k
conv/FC weights, dense ~94 %, so the 90 % level visibly loses accuracy). Per seed: a dense model trained from scratch (its own init), then from it:
- nested: `train_subnets(dense, levels)`: one backbone, all levels jointly;
- independent: for each level alone, `train_subnets(dense, [level])`: the same row-mask
  rule (equal count per row, |w| order, re-ranked), the same per-level BN / biases /
  row scales, the same optimizer and the same number of epochs, so the K independent
  models together get exactly the training passes the nested run spends on K levels;
- magnitude: the nested masks at epoch 0 (pruning by |w|, no retraining);
- dense: the dense model as trained, and "dense+ft": fine-tuned as long as each level
  (`train_subnets(dense, [0.0])`), so a sparse level that beats "dense" but not
  "dense+ft" gained from the extra epochs, not from sparsity.
Accuracy is on the held-out 25 % (the final epoch; no model selection). Writes JSON
(default bench-results/subnets_accuracy.json) and prints a table. The default run
takes ~150 s of CPU on one core (--jobs 2 spreads seeds over two processes); --quick is
a smoke test (~15 s).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

LEVELS = (0.5, 0.75, 0.9)


def _one_seed(args) -> dict:
    """Dense from scratch, then nested, independent and dense fine-tuned, for one seed
    (single-threaded; runs in a worker process with jobs > 1)."""
    (seed, levels, epochs, dense_epochs, lr, width, hidden, data_seed, test_copies, distill,
     progress) = args
    import torch
    from toolchain.examples.digits16 import (accuracy, digits16_data, make_digits16_cnn,
                                             train_dense)
    from .train import train_subnets
    torch.set_num_threads(1)
    data = digits16_data(data_seed, test_copies=test_copies)
    t1 = time.time()
    torch.manual_seed(seed)
    dense = train_dense(make_digits16_cnn(width, hidden), data, epochs=dense_epochs, seed=seed)
    dense_acc = accuracy(dense, data[2], data[3])
    t_dense = time.time() - t1
    t1 = time.time()
    nested = train_subnets(dense, data, list(levels), epochs=epochs, lr=lr, seed=seed,
                           progress=progress, distill=distill)
    t_nested = time.time() - t1
    t1 = time.time()
    indep = [train_subnets(dense, data, [s], epochs=epochs, lr=lr, seed=seed,
                           progress=progress) for s in levels]
    t_indep = time.time() - t1
    ft = train_subnets(dense, data, [0.0], epochs=epochs, lr=lr, seed=seed, progress=progress)
    dense_w = sum(p.numel() for n, p in dense.named_parameters()
                  if n.endswith("weight") and p.dim() > 1)
    return dict(seed=seed, dense=dense_acc, nested=nested.accuracy,
                dense_finetuned=ft.accuracy[0], magnitude=nested.history[0]["accuracy"],
                independent=[r.accuracy[0] for r in indep],
                nested_history=[h["accuracy"] for h in nested.history],
                seconds=dict(dense=round(t_dense, 2), nested=round(t_nested, 2),
                             independent=round(t_indep, 2)),
                _nonzeros=nested.nonzeros(), _layers=[l.summary() for l in nested.layers],
                _dense_w=dense_w, _n=(len(data[1]), len(data[3])))


def run(levels=LEVELS, seeds=3, epochs=20, dense_epochs=30, lr=3e-3, width=8, hidden=32,
        quick=False, progress=False, data_seed=0, test_copies=4, distill=0.0,
        jobs=1) -> dict:
    """jobs > 1 runs seeds in that many worker processes (results do not depend on it)."""
    import torch
    t0 = time.time()
    if quick:
        seeds, epochs, dense_epochs = 1, 2, 4
    work = [(seed, tuple(levels), epochs, dense_epochs, lr, width, hidden, data_seed,
             test_copies, distill, progress) for seed in range(seeds)]
    if jobs > 1 and seeds > 1:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(min(jobs, seeds)) as pool:
            runs = pool.map(_one_seed, work)
    else:
        threads = torch.get_num_threads()
        try:
            runs = [_one_seed(w) for w in work]
        finally:
            torch.set_num_threads(threads)
    first = runs[0]
    nonzeros, layers, dense_w, n = (first.pop("_nonzeros"), first.pop("_layers"),
                                    first.pop("_dense_w"), first.pop("_n"))
    for r in runs[1:]:
        for k in ("_nonzeros", "_layers", "_dense_w", "_n"):
            r.pop(k)
    dense_accs = [r["dense"] for r in runs]
    t_dense = sum(r["seconds"]["dense"] for r in runs)
    rows = []
    for k, s in enumerate(levels):
        nz = nonzeros[k]
        per = {key: [r[key][k] for r in runs] for key in ("nested", "independent",
                                                           "magnitude")}
        rows.append(dict(
            sparsity=s, conv_fc_weights=dense_w, nonzero_weights=nz,
            density=nz / dense_w, dense=float(np.mean(dense_accs)),
            dense_finetuned=float(np.mean([r["dense_finetuned"] for r in runs])),
            magnitude=float(np.mean(per["magnitude"])),
            independent=float(np.mean(per["independent"])),
            nested=float(np.mean(per["nested"])),
            nested_minus_independent_pp=100 * float(np.mean(per["nested"]) -
                                                    np.mean(per["independent"])),
            per_seed=per))
    worst = min(r["nested_minus_independent_pp"] for r in rows)
    return dict(
        task=f"digits16 (sklearn digits 16x16, affine+noise), {n[0]} train / "
             f"{n[1]} test ({test_copies} draws of 449 held-out digits)",
        model=f"digits16 CNN width {width}, hidden {hidden}", levels=list(levels), seeds=seeds,
        epochs=epochs, dense_epochs=dense_epochs, lr=lr, quick=quick, distill=distill,
        dense_accuracy=float(np.mean(dense_accs)), levels_table=rows,
        layers=layers, jobs=jobs,
        target=dict(nested_within_pp_of_independent=1.0,
                    worst_nested_minus_independent_pp=worst, met=worst >= -1.0),
        runs=runs,
        seconds=dict(dense=round(t_dense, 2), total=round(time.time() - t0, 2)),
        host=dict(python=platform.python_version(), torch=torch.__version__,
                  threads=1, machine=platform.machine()))


def table(res: dict) -> str:
    head = (f"{'level':>6} {'nonzero':>8} {'dense':>7} {'dense+ft':>8} {'magnitude':>10} "
            f"{'independent':>12} {'nested':>7} {'nested-indep':>13}")
    lines = [f"subnets accuracy: {res['task']}; {res['model']}; {res['seeds']} seed(s), "
             f"{res['epochs']} epochs per level", head, "-" * len(head)]
    for r in res["levels_table"]:
        lines.append(f"{r['sparsity']:>6.0%} {r['nonzero_weights']:>8,} {r['dense']:>7.2%} "
                     f"{r['dense_finetuned']:>8.2%} {r['magnitude']:>10.2%} "
                     f"{r['independent']:>12.2%} {r['nested']:>7.2%} "
                     f"{r['nested_minus_independent_pp']:>+11.2f}pp")
    dense = [l["name"] + " (" + l["reason"] + ")" for l in res["layers"] if not l["sparse"]]
    t = res["target"]
    lines.append(f"left dense: {'; '.join(dense) or 'none'}")
    lines.append(f"target nested within 1 pp of independent at every level: "
                 f"{'met' if t['met'] else 'NOT met'} "
                 f"(worst {t['worst_nested_minus_independent_pp']:+.2f} pp)"
                 f"; {res['seconds']['total']:.0f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m toolchain.subnets.bench_accuracy",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 2 epochs")
    ap.add_argument("--json", default=None,
                    help="output (default bench-results/subnets_accuracy.json; "
                         "bench-results/subnets_accuracy_quick.json with --quick)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--dense-epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--width", type=int, default=8, help="CNN width (channels of conv1)")
    ap.add_argument("--hidden", type=int, default=32, help="hidden FC units")
    ap.add_argument("--test-copies", type=int, default=4,
                    help="transformed draws of each held-out digit in the test set")
    ap.add_argument("--distill", type=float, default=0.0,
                    help="in-place distillation weight for the nested run (default 0: the "
                         "plain weighted loss)")
    ap.add_argument("--levels", default=",".join(str(s) for s in LEVELS))
    ap.add_argument("--progress", action="store_true", help="per-epoch progress")
    ap.add_argument("--jobs", type=int, default=1,
                    help="worker processes, one seed each (same results; 2 on an idle "
                         "2-core machine cuts the wall time by a third)")
    a = ap.parse_args(argv)
    from .train import parse_levels
    res = run(tuple(parse_levels(a.levels)), a.seeds, a.epochs, a.dense_epochs, a.lr,
              a.width, a.hidden, quick=a.quick, progress=a.progress, test_copies=a.test_copies,
              distill=a.distill, jobs=a.jobs)
    path = a.json or os.path.join("bench-results", "subnets_accuracy_quick.json" if a.quick
                                  else "subnets_accuracy.json")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print(table(res))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

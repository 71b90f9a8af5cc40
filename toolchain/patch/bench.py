"""Benchmark of partial weight updates: `python -m toolchain.patch.bench` / `mcu patch bench`.

Model: the digits CNN of toolchain/examples/digits.py (conv3x3, depthwise, conv1x1, fc;
2,080 conv/fc weights, 74 biases), through converters.from_torch and the PTQ
quantizer to int8. Scenarios (seeds fixed; see _split): "growth" (default: the deployed model saw 10 %
of the training split, rounds 1-3 train on 25 / 50 / 100 %; the server keeps its data)
and "classes" (class-incremental drift: deployed on classes 0-6 only).
Each method keeps its own chain of deployed models. Per round and method:
dpu_update -> build_patch -> apply_patch (the host reference of the device apply) ->
int8 accuracy on the fixed test split with the bit-exact reference interpreter.

Methods: full (every weight; shipped as a FULL patch), dpu at k = 1/5/10 %, random
selection at the same k, global-only metric (the diff mode's) at 5 %.
Bytes: patch file bytes (header 128 + tag 32 included) vs the FULL patch and the weight
store; streaming time at 115200 baud from toolchain.patch.stream.
Re-quantization cost: accuracy of the trained float weights (activations
fake-quantized) vs the same weights re-quantized in the deployed scales vs a fresh
PTQ with new scales (what a full reflash could use).
"""
from __future__ import annotations

import copy
import json
import os
import time
import zlib

import numpy as np

KEY = bytes(range(32))           # bench key (public; never provision it)


def _float_graph(graph, floats):
    g = copy.deepcopy(graph)
    from toolchain.patch.store import store_order
    order = store_order(g)
    for t in g.tensors.values():
        if not t.is_const:
            t.dtype, t.quant = "float32", None
    for i, f in floats.items():
        t = g.tensors[order[i]]
        t.data, t.dtype, t.quant = np.asarray(f, np.float32).reshape(t.shape), "float32", None
    return g


SCENARIOS = ("growth", "classes")


def _split(seed, scenario="growth"):
    """Index sets into the training split: [deployed, round 1, round 2, round 3].
    growth: the deployed model saw 10 % of the data; rounds see 25 / 50 / 100 %.
    classes: the deployed model saw chunk 0 (of 4) restricted to classes 0-6; round r
    sees chunks 0..r with all classes (class-incremental drift, much harder)."""
    from toolchain.examples.digits import digits_data
    xtr, ytr, xte, yte = digits_data(seed)
    xtr, xte = xtr.transpose(0, 2, 3, 1), xte.transpose(0, 2, 3, 1)     # NHWC
    rng = np.random.default_rng(seed + 1)
    perm = rng.permutation(len(xtr))
    if scenario == "growth":
        sets = [perm[:int(f * len(perm))] for f in (0.10, 0.25, 0.50, 1.0)]
    elif scenario == "classes":
        chunks = np.array_split(perm, 4)
        c0 = chunks[0][ytr[chunks[0]] <= 6]
        sets = [c0] + [np.concatenate([c0] + list(chunks[1:r + 1])) for r in (1, 2, 3)]
    else:
        raise ValueError(f"unknown scenario {scenario!r} ({', '.join(SCENARIOS)})")
    return xtr, ytr, xte, yte, sets


def _initial_model(x, y, seed, epochs=30):
    import torch

    import converters
    from converters.quantize import quantize
    from toolchain.examples.digits import make_digits_cnn
    torch.manual_seed(seed)
    m = make_digits_cnn()
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    m.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(perm), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m.logits(xt[b]), yt[b]).backward()
            opt.step()
    m.eval()
    fg = converters.from_torch(m, xt[:1])
    return quantize(fg, x)


def run_bench(json_path=None, quick=False, seed=0, echo=print, scenario="growth",
              device=False):
    """device=True adds measured streaming (toolchain/patch/stream_bench.py) of round 1's
    dpu@5% and full patches onto the host board (direct and paced at 115200 baud) and QEMU."""
    import torch

    from converters.quantize import quantize, run_int8
    from toolchain.patch.apply import apply_patch
    from toolchain.patch.dpu import dpu_update
    from toolchain.patch.format import COMP_ZLIB, decode_patch
    from toolchain.patch.make import build_patch
    from toolchain.patch.store import store_hash, weight_store
    from toolchain.patch.stream import stream_estimate
    from toolchain.patch.torch_graph import GraphModule

    t_start = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    xtr, ytr, xte, yte, sets = _split(seed, scenario)
    rounds = 1 if quick else 3
    ep, ft = (8, 8) if quick else (15, 15)
    methods = [("full", 1.0)] + [("dpu", k) for k in (0.01, 0.05, 0.10)] + \
        [("random", k) for k in (0.01, 0.05, 0.10)] + [("global", 0.05)]
    if quick:
        methods = [("full", 1.0), ("dpu", 0.05), ("random", 0.05)]

    def acc(g):
        return float((run_int8(g, xte).argmax(1) == yte).mean())

    g0 = _initial_model(xtr[sets[0]], ytr[sets[0]], seed)
    st0 = weight_store(g0)
    a0 = acc(g0)
    w_total = sum(t.size for t in st0.tensors if t.role == "weight")
    echo(f"digits CNN int8: {w_total:,} conv/fc weights, {st0.patchable_bytes():,} B of weights+"
         f"biases; scenario {scenario}; deployed ({len(sets[0])} samples): test accuracy {a0:.2%}")
    chains = {f"{m}@{k:g}": g0 for m, k in methods}
    seqs = {name: 0 for name in chains}
    rows = []
    requant = []
    samples = {}                   # round-1 patches measured on devices (device=True)
    for r in range(1, rounds + 1):
        idx = sets[r]
        x, y = xtr[idx], ytr[idx]
        for meth, k in methods:
            name = f"{meth}@{k:g}"
            g = chains[name]
            t0 = time.time()
            upd = dpu_update(g, x, y, budget=k, epochs=ep, finetune_epochs=ft, selection=meth,
                             seed=seed + r)
            seqs[name] += 1
            ptype = "full" if meth == "full" else "delta"
            res = build_patch(g, upd.new_q, KEY, seqs[name], ptype)
            new = apply_patch(g, res.data, KEY)
            assert store_hash(new) == res.info["target"]
            a = acc(new)
            p = decode_patch(res.data, KEY)
            st = weight_store(g)
            wb = sum(gr.encoded_size(p.has_old) for gr in p.groups
                     if st.tensors[gr.tensor].role == "weight")
            bb = sum(gr.encoded_size(p.has_old) for gr in p.groups
                     if st.tensors[gr.tensor].role == "bias")
            row = dict(round=r, method=meth, budget=k, accuracy=a, patch_type=ptype,
                       patch_bytes=len(res.data), weight_payload_bytes=wb, bias_payload_bytes=bb,
                       entries=p.entries, weights_selected=upd.selected,
                       weights_changed=res.info["weights_changed"],
                       stream_s_115200=stream_estimate(len(res.data))["seconds"],
                       train_s=round(time.time() - t0, 2))
            if meth == "full":
                # the same update as a DELTA patch, and what re-quantization costs
                row["delta_patch_bytes"] = len(build_patch(g, upd.new_q, KEY, seqs[name]).data)
                gm = GraphModule(g)
                with torch.no_grad():
                    for kk, v in upd.floats.items():
                        gm.params[str(kk)].copy_(torch.tensor(v, dtype=torch.float32))
                    a_float = float((gm(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean())
                fresh = quantize(_float_graph(g, upd.floats), x)
                requant.append(dict(round=r, float_weights=a_float, old_scales=a,
                                    fresh_ptq=acc(fresh)))
            if meth == "dpu" and k == 0.05:
                z = build_patch(g, upd.new_q, KEY, seqs[name], compression=COMP_ZLIB)
                row["zlib_patch_bytes"] = len(z.data)
            rows.append(row)
            if r == 1 and name in ("dpu@0.05", "full@1"):
                samples[name] = (g, res.data)
            chains[name] = new
        full = next(rw for rw in rows if rw["round"] == r and rw["method"] == "full")
        echo(f"\nround {r}: {len(idx)} samples")
        echo(f"  {'method':<12} {'acc':>7} {'Δ vs full':>9} {'changed':>8} {'patch B':>8} "
             f"{'% full':>7} {'w/b payload B':>14} {'115200 s':>8}")
        for rw in (rw for rw in rows if rw["round"] == r):
            echo(f"  {rw['method'] + '@' + format(rw['budget'], 'g'):<12} {rw['accuracy']:>7.2%} "
                 f"{100 * (rw['accuracy'] - full['accuracy']):>+8.2f}pp {rw['weights_changed']:>8} "
                 f"{rw['patch_bytes']:>8} {100 * rw['patch_bytes'] / full['patch_bytes']:>6.1f}% "
                 f"{str(rw['weight_payload_bytes']) + '/' + str(rw['bias_payload_bytes']):>14} "
                 f"{rw['stream_s_115200']:>8.3f}")
        rq = requant[-1]
        echo(f"  re-quantization (full update): float weights {rq['float_weights']:.2%}, "
             f"int8 in deployed scales {rq['old_scales']:.2%}, fresh PTQ scales "
             f"{rq['fresh_ptq']:.2%}")
    summary = {}
    for meth, k in methods:
        rs = [rw for rw in rows if rw["method"] == meth and rw["budget"] == k]
        fs = [rw for rw in rows if rw["method"] == "full"]
        summary[f"{meth}@{k:g}"] = dict(
            mean_accuracy=float(np.mean([rw["accuracy"] for rw in rs])),
            final_accuracy=rs[-1]["accuracy"],
            mean_gap_pp_vs_full=float(np.mean([100 * (a["accuracy"] - b["accuracy"])
                                               for a, b in zip(rs, fs)])),
            mean_patch_bytes=float(np.mean([rw["patch_bytes"] for rw in rs])),
            bytes_vs_full_patch=float(np.mean([a["patch_bytes"] / b["patch_bytes"]
                                               for a, b in zip(rs, fs)])))
    echo("\nsummary over rounds (mean):")
    for name, s in summary.items():
        echo(f"  {name:<12} accuracy {s['mean_accuracy']:.2%} ({s['mean_gap_pp_vs_full']:+.2f} pp vs "
             f"full), patch {s['mean_patch_bytes']:,.0f} B = {100 * s['bytes_vs_full_patch']:.1f} % "
             f"of the full patch")
    out = dict(model="digits CNN (toolchain/examples/digits.py), int8 PTQ", seed=seed,
               scenario=scenario,
               quick=quick, epochs=ep, finetune_epochs=ft, deployed_accuracy=a0,
               conv_fc_weights=w_total, store_bytes=st0.nbytes,
               patchable_bytes=st0.patchable_bytes(), baud=115200,
               stream_model=stream_estimate(0)["chunk"], rows=rows, requantization=requant,
               summary=summary, seconds=round(time.time() - t_start, 1))
    if device:
        from toolchain.patch.stream_bench import measure_streaming
        echo("\nmeasured streaming (send + apply on devices):")
        out["streaming_measured"] = measure_streaming(samples, key=KEY, echo=echo)
    torch.set_num_threads(threads)
    path = json_path or os.path.join("build", "patch-bench.json")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    echo(f"\nwrote {path} ({out['seconds']} s)")
    return out


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenario", choices=SCENARIOS, default="growth")
    ap.add_argument("--device", action="store_true", help="also measure streaming on devices")
    a = ap.parse_args()
    run_bench(a.json, a.quick, a.seed, scenario=a.scenario, device=a.device)

"""Benchmark of partial weight updates: `python -m toolchain.patch.bench` / `mcu patch bench`.

Setting (deep partial updating, REFERENCE.md §5): a CNN is trained on an initial part of
sklearn's digits (offline data), converted with converters.from_torch and quantized to
int8 (PTQ) = the deployed model. The server then gets more data over rounds and, per
round, trains from the deployed int8 model (toolchain.patch.dpu, weights seen through
the deployed scales) and ships a patch; the device applies it (toolchain.patch.apply,
the host reference of the device apply). Each method keeps its own chain of deployed
models. Accuracy: the int8 reference interpreter (bit-exact with TFLM) on a held-out
test split (449 images) after every round; reported as the mean over rounds, then mean ±
sample std over seeds (each seed redraws the split, the initial model and training).

Models: "cnn-m" (default; toolchain.examples.digits.make_digits_cnn_m: 57,232 conv/fc
weights, 250 biases) and "cnn-s" (the 2,080-weight digits CNN of the first benchmark).
Scenarios (see _split): "growth" (default: deployed on 10 % of the training split,
rounds train on 25 / 50 / 100 %) and "classes" (class-incremental drift).

Methods: full (every weight and bias, shipped as a FULL patch), DPU at k = 1/3/5/10 %
of the conv/fc weights (biases in full), random selection at k = 1/5/10 % (same
fine-tuning recipe, the selection is the only difference).
Bytes: the patch files as encoded (header 128 + tag 32 included). "Full-update bytes" =
the FULL patch: new values of every weight and bias, no old values. Partial updates
are reported both as DELTA with old values (rollback from the patch) and as DELTA
without (roll-forward only, like FULL; docs/patch-format.md §3.1). The .tflite size
of the deployed model is reported too. Streaming time: 115200-baud estimate
(toolchain.patch.stream); `--device` adds measured streaming (stream_bench.py).
"""
from __future__ import annotations

import copy
import json
import os
import time

import numpy as np

KEY = bytes(range(32))           # bench key (public; never provision it)

SCENARIOS = ("growth", "classes")
MODELS = ("cnn-m", "cnn-s")
# Training recipe (tuned on seeds 0-2 of the growth scenario, see docs/patch-format.md §7):
# phase 1 (all weights from w0) and phase 2 (fine-tune after selection) 10 epochs each,
# Adam lr 3e-3 / 1e-2 (the kept weights alone need the larger steps), batch 64, λ = 0.5.
# The full update trains 20 epochs at 3e-3 (1e-2 diverges for it).
RECIPE = dict(epochs=10, finetune_epochs=10, lr=3e-3, finetune_lr=1e-2, lam=0.5, batch=64)
QUICK_RECIPE = dict(RECIPE, epochs=4, finetune_epochs=4)
METHODS = [("full", 1.0)] + [("dpu", k) for k in (0.01, 0.03, 0.05, 0.10)] + \
    [("random", k) for k in (0.01, 0.05, 0.10)]
QUICK_METHODS = [("full", 1.0), ("dpu", 0.05), ("random", 0.05)]
TARGET = dict(bytes_fraction=0.10, gap_pp=-0.5)      # issue #6: ≤ 10 % of the bytes, ≤ 0.5 pp


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


def _make_model(model):
    from toolchain.examples.digits import make_digits_cnn, make_digits_cnn_m
    if model == "cnn-m":
        return make_digits_cnn_m()
    if model == "cnn-s":
        return make_digits_cnn()
    raise ValueError(f"unknown model {model!r} ({', '.join(MODELS)})")


def _initial_model(x, y, seed, epochs=30, model="cnn-m"):
    import torch

    import converters
    from converters.quantize import quantize
    torch.manual_seed(seed)
    m = _make_model(model)
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


def _one_seed(seed, scenario, model, methods, recipe, rounds, echo, samples):
    import torch

    from converters.quantize import quantize, run_int8
    from converters.tflite_writer import write_tflite
    from toolchain.patch.apply import apply_patch
    from toolchain.patch.dpu import dpu_update
    from toolchain.patch.format import COMP_ZLIB, decode_patch
    from toolchain.patch.make import build_patch
    from toolchain.patch.store import store_hash, weight_store
    from toolchain.patch.stream import stream_estimate
    from toolchain.patch.torch_graph import GraphModule

    xtr, ytr, xte, yte, sets = _split(seed, scenario)

    def acc(g):
        return float((run_int8(g, xte).argmax(1) == yte).mean())

    g0 = _initial_model(xtr[sets[0]], ytr[sets[0]], seed, model=model)
    st0 = weight_store(g0)
    info = dict(seed=seed, deployed_accuracy=acc(g0), deployed_samples=len(sets[0]),
                conv_fc_weights=sum(t.size for t in st0.tensors if t.role == "weight"),
                biases=sum(t.size for t in st0.tensors if t.role == "bias"),
                patchable_bytes=st0.patchable_bytes(), store_bytes=st0.nbytes,
                tflite_bytes=len(write_tflite(g0)))
    chains = {f"{m}@{k:g}": g0 for m, k in methods}
    seqs = {name: 0 for name in chains}
    rows, requant = [], []
    for r in range(1, rounds + 1):
        idx = sets[r]
        x, y = xtr[idx], ytr[idx]
        for meth, k in methods:
            name = f"{meth}@{k:g}"
            g = chains[name]
            t0 = time.time()
            rc = dict(recipe)
            if meth == "full":          # one continuous training at lr (no selection step)
                rc["finetune_lr"] = None
            upd = dpu_update(g, x, y, budget=k, selection=meth, seed=seed * 100 + r, **rc)
            seqs[name] += 1
            st = weight_store(g)
            if meth == "full":
                res = build_patch(g, upd.new_q, KEY, seqs[name], "full")
            else:
                res = build_patch(g, upd.new_q, KEY, seqs[name], "delta", with_old=True)
            no_old = build_patch(g, upd.new_q, KEY, seqs[name], "delta", with_old=False)
            new = apply_patch(g, res.data, KEY)
            assert store_hash(new) == res.info["target"] == no_old.info["target"]
            assert store_hash(apply_patch(g, no_old.data, KEY)) == res.info["target"]
            a = acc(new)
            p = decode_patch(res.data, KEY)
            wb = sum(gr.encoded_size(p.has_old) for gr in p.groups
                     if st.tensors[gr.tensor].role == "weight")
            bb = sum(gr.encoded_size(p.has_old) for gr in p.groups
                     if st.tensors[gr.tensor].role == "bias")
            row = dict(seed=seed, round=r, samples=len(idx), method=meth, budget=k, accuracy=a,
                       patch_type=res.info["type"], patch_bytes=len(res.data),
                       delta_with_old_bytes=(len(build_patch(g, upd.new_q, KEY, seqs[name]).data)
                                             if meth == "full" else len(res.data)),
                       delta_no_old_bytes=len(no_old.data),
                       weight_payload_bytes=wb, bias_payload_bytes=bb, entries=p.entries,
                       weights_selected=upd.selected, weights_changed=res.info["weights_changed"],
                       stream_s_115200=stream_estimate(len(res.data))["seconds"],
                       stream_s_115200_no_old=stream_estimate(len(no_old.data))["seconds"],
                       train_s=round(time.time() - t0, 2))
            if meth == "full":          # what re-quantizing in the deployed scales costs
                gm = GraphModule(g)
                with torch.no_grad():
                    for kk, v in upd.floats.items():
                        gm.params[str(kk)].copy_(torch.tensor(v, dtype=torch.float32))
                    a_float = float((gm(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean())
                fresh = quantize(_float_graph(g, upd.floats), x)
                requant.append(dict(seed=seed, round=r, float_weights=a_float, old_scales=a,
                                    fresh_ptq=acc(fresh)))
            if meth == "dpu" and k == 0.05:
                z = build_patch(g, upd.new_q, KEY, seqs[name], compression=COMP_ZLIB)
                row["zlib_patch_bytes"] = len(z.data)
            rows.append(row)
            if samples is not None and r == 1 and name in ("dpu@0.05", "full@1"):
                samples[name] = (g, res.data)
            chains[name] = new
    full = [rw for rw in rows if rw["method"] == "full"]
    line = [f"seed {seed}: deployed {info['deployed_accuracy']:.2%}"]
    for meth, k in methods:
        rs = [rw for rw in rows if rw["method"] == meth and rw["budget"] == k]
        line.append(f"{meth}@{k:g} {np.mean([rw['accuracy'] for rw in rs]):.2%}")
    echo("  " + ", ".join(line) + f" (full {np.mean([rw['accuracy'] for rw in full]):.2%})")
    return info, rows, requant


def _ms(v):
    v = np.asarray(v, float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarize(rows, methods, seeds):
    """Per method: accuracy (mean over rounds) and gap to the full update, mean ± sample
    std over seeds; bytes as fractions of the FULL patch (mean over seeds and rounds)."""
    out = {}
    for meth, k in methods:
        accs, gaps, fr_old, fr_new, b_old, b_new, changed = [], [], [], [], [], [], []
        for s in seeds:
            rs = [rw for rw in rows if rw["seed"] == s and rw["method"] == meth and rw["budget"] == k]
            fs = [rw for rw in rows if rw["seed"] == s and rw["method"] == "full"]
            accs.append(100 * np.mean([rw["accuracy"] for rw in rs]))
            gaps.append(100 * np.mean([a["accuracy"] - b["accuracy"] for a, b in zip(rs, fs)]))
            for a, b in zip(rs, fs):
                fr_old.append(a["delta_with_old_bytes"] / b["patch_bytes"])
                fr_new.append(a["delta_no_old_bytes"] / b["patch_bytes"])
                b_old.append(a["delta_with_old_bytes"])
                b_new.append(a["delta_no_old_bytes"])
                changed.append(a["weights_changed"])
        am, asd = _ms(accs)
        gm, gsd = _ms(gaps)
        d = dict(method=meth, budget=k, accuracy_pct=am, accuracy_std=asd, gap_pp=gm,
                 gap_std=gsd, gap_pp_per_seed=gaps, weights_changed=float(np.mean(changed)))
        if meth == "full":
            d.update(patch_bytes=float(np.mean([rw["patch_bytes"] for rw in rows
                                                if rw["method"] == "full"])),
                     bytes_fraction=1.0)
        else:
            d.update(delta_with_old_bytes=float(np.mean(b_old)),
                     delta_no_old_bytes=float(np.mean(b_new)),
                     bytes_fraction_with_old=float(np.mean(fr_old)),
                     bytes_fraction_no_old=float(np.mean(fr_new)))
            if meth == "dpu":
                ok_g = gm >= TARGET["gap_pp"]
                d["target_met_no_old"] = bool(ok_g and d["bytes_fraction_no_old"] <= TARGET["bytes_fraction"])
                d["target_met_with_old"] = bool(ok_g and d["bytes_fraction_with_old"] <= TARGET["bytes_fraction"])
        out[f"{meth}@{k:g}"] = d
    return out


def format_table(summary, full_bytes):
    lines = ["| update | accuracy (int8) | vs full | DELTA bytes, no old values | with old values |",
             "|---|---|---|---|---|"]
    for name, d in summary.items():
        label = ("full (FULL patch)" if d["method"] == "full" else
                 f"{'DPU' if d['method'] == 'dpu' else d['method']} k = {100 * d['budget']:g} %")
        acc = f"{d['accuracy_pct']:.2f} ± {d['accuracy_std']:.2f} %"
        if d["method"] == "full":
            lines.append(f"| {label} | {acc} | — | {full_bytes:,.0f} B = 100 % | — |")
            continue
        lines.append(f"| {label} | {acc} | {d['gap_pp']:+.2f} ± {d['gap_std']:.2f} pp | "
                     f"{d['delta_no_old_bytes']:,.0f} B = {100 * d['bytes_fraction_no_old']:.1f} % | "
                     f"{d['delta_with_old_bytes']:,.0f} B = {100 * d['bytes_fraction_with_old']:.1f} % |")
    return "\n".join(lines)


def run_bench(json_path=None, quick=False, seed=None, echo=print, scenario="growth",
              device=False, seeds=None, model="cnn-m"):
    """seeds: iterable of seeds (default 0, 1, 2; quick: 0); `seed` picks one seed.
    device=True adds measured streaming (toolchain/patch/stream_bench.py) of the first
    seed's round-1 dpu@5% and full patches onto the host board (direct and paced at
    115200 baud) and QEMU."""
    import torch
    t_start = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    if seeds is None:
        seeds = (seed,) if seed is not None else ((0,) if quick else (0, 1, 2))
    seeds = tuple(int(s) for s in seeds)
    methods = QUICK_METHODS if quick else METHODS
    recipe = QUICK_RECIPE if quick else RECIPE
    rounds = 1 if quick else 3
    echo(f"patch bench: {model}, scenario {scenario}, seeds {', '.join(map(str, seeds))}, "
         f"{rounds} round(s), recipe {recipe}")
    samples = {} if device else None
    infos, rows, requant = [], [], []
    try:
        for s in seeds:
            info, rw, rq = _one_seed(s, scenario, model, methods, recipe, rounds, echo,
                                     samples if s == seeds[0] else None)
            infos.append(info)
            rows += rw
            requant += rq
    finally:
        torch.set_num_threads(threads)
    i0 = infos[0]
    summary = summarize(rows, methods, seeds)
    full_bytes = summary["full@1"]["patch_bytes"]
    echo(f"\n{model} int8: {i0['conv_fc_weights']:,} conv/fc weights, {i0['biases']} biases, "
         f"weights+biases {i0['patchable_bytes']:,} B, .tflite {i0['tflite_bytes']:,} B; "
         f"FULL patch {full_bytes:,.0f} B; deployed accuracy "
         f"{np.mean([i['deployed_accuracy'] for i in infos]):.2%} (mean over seeds)")
    echo(f"mean over {rounds} round(s), then mean ± std over {len(seeds)} seed(s):\n")
    echo(format_table(summary, full_bytes))
    dpus = {n: d for n, d in summary.items() if d["method"] == "dpu"}
    met = [n for n, d in dpus.items() if d["target_met_no_old"] or d["target_met_with_old"]]
    echo(f"\ntarget (≤ {100 * TARGET['bytes_fraction']:g} % of the FULL patch bytes within "
         f"{-TARGET['gap_pp']:g} pp of full): " + (f"met by {', '.join(met)}" if met else "not met")
         + " — " + "; ".join(f"{n}: {d['gap_pp']:+.2f} pp at {100 * d['bytes_fraction_no_old']:.1f} % "
                              f"(no old) / {100 * d['bytes_fraction_with_old']:.1f} % (old)"
                              for n, d in dpus.items()))
    if requant:
        echo("re-quantization of the full update in the deployed scales (mean): float weights "
             f"{np.mean([q['float_weights'] for q in requant]):.2%}, int8 in deployed scales "
             f"{np.mean([q['old_scales'] for q in requant]):.2%}, fresh PTQ "
             f"{np.mean([q['fresh_ptq'] for q in requant]):.2%}")
    from toolchain.patch.stream import stream_estimate
    out = dict(model=model, scenario=scenario, seeds=list(seeds), quick=quick, rounds=rounds,
               recipe=recipe, target=TARGET, conv_fc_weights=i0["conv_fc_weights"],
               biases=i0["biases"], patchable_bytes=i0["patchable_bytes"],
               store_bytes=i0["store_bytes"], tflite_bytes=i0["tflite_bytes"],
               full_patch_bytes=full_bytes, deployed=infos, baud=115200,
               stream_model=stream_estimate(0)["chunk"], summary=summary, rows=rows,
               requantization=requant, table_markdown=format_table(summary, full_bytes))
    if device:
        from toolchain.patch.stream_bench import measure_streaming
        echo("\nmeasured streaming (send + apply on devices):")
        out["streaming_measured"] = measure_streaming(samples, key=KEY, echo=echo)
    out["seconds"] = round(time.time() - t_start, 1)
    path = json_path or os.path.join("bench-results", "patch_bench.json")
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
    ap.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; quick 0)")
    ap.add_argument("--scenario", choices=SCENARIOS, default="growth")
    ap.add_argument("--model", choices=MODELS, default="cnn-m")
    ap.add_argument("--device", action="store_true", help="also measure streaming on devices")
    a = ap.parse_args()
    run_bench(a.json, a.quick, scenario=a.scenario, device=a.device, model=a.model,
              seeds=None if a.seeds is None else [int(s) for s in a.seeds.split(",")])

"""Deep partial updating (REFERENCE.md §5) on an int8 IR graph, in PyTorch.

    dpu_update(graph, x, y, budget=0.05, lam=0.5, ...) -> DPUResult

1. Train every weight and bias from the deployed values w0 (dequantized int8) on the
   new data, accumulating per conv/fc weight the local contribution Σ_t −Δw_t·g_t.
2. Global contribution (w_full − w0)². Normalise each by its sum over all layers;
   μ = λ·glob/Σglob + (1−λ)·loc/Σloc.
3. Keep the global top round(budget·I) weights by μ (I = all conv/fc weights), rewind
   the rest to w0, fine-tune only the kept weights (biases in full throughout).
4. Re-quantize in the deployed scales (make.quantize_in_scales); unselected weights
   keep their old int8 values exactly.

selection="global" uses μ with λ = 1 (the diff mode's metric), "random" a random mask
of the same size, "full" keeps every weight (the full-update baseline).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from toolchain.ir.graph import Graph

from .make import quantize_in_scales, random_masks, select_topk
from .store import weight_store


@dataclass
class DPUResult:
    new_q: dict[int, np.ndarray]              # store index -> flat ints in deployed scales
    floats: dict[int, np.ndarray]             # store index -> trained float values
    masks: dict[int, np.ndarray] | None       # store index -> flat bool (weights only)
    selected: int
    stats: dict = field(default_factory=dict)


def dpu_scores(loc: dict[int, np.ndarray], glob: dict[int, np.ndarray], lam: float = 0.5
               ) -> dict[int, np.ndarray]:
    """μ = λ·glob/Σglob + (1−λ)·loc/Σloc, sums over all layers."""
    sl = float(sum(v.sum() for v in loc.values())) or 1.0
    sg = float(sum(v.sum() for v in glob.values())) or 1.0
    return {i: lam * glob[i] / sg + (1 - lam) * loc[i] / sl for i in glob}


def _batches(n, bs, gen):
    import torch
    perm = torch.randperm(n, generator=gen)
    return [perm[i:i + bs] for i in range(0, n, bs)]


def dpu_update(graph: Graph, x: np.ndarray, y: np.ndarray, budget: float = 0.05,
               lam: float = 0.5, epochs: int = 20, finetune_epochs: int = 20,
               selection: str = "dpu", seed: int = 0, lr: float = 3e-3,
               batch: int = 64, rewind: str = "all", finetune_lr: float | None = None
               ) -> DPUResult:
    """x: float inputs in the graph's input layout (NHWC), y: int labels. finetune_lr:
    learning rate of step 3 (default lr, or lr/3 with rewind="unselected")."""
    import torch
    from .torch_graph import GraphModule
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = GraphModule(graph)
        st = weight_store(graph)
        w_keys = [k for k in m.params if st.tensors[int(k)].role == "weight"]
        w0 = {k: p.detach().clone() for k, p in m.params.items()}
        loc = {k: torch.zeros_like(m.params[k]) for k in w_keys}
        xt = torch.as_tensor(np.asarray(x, np.float32))
        yt = torch.as_tensor(np.asarray(y, np.int64))
        lossf = torch.nn.functional.cross_entropy
        opt = torch.optim.Adam(m.parameters(), lr=lr)
        losses = []
        # random selection with rewind="all" discards phase 1 entirely: skip it
        phase1 = 0 if (selection == "random" and rewind == "all") else epochs
        for _ in range(phase1):
            for b in _batches(len(xt), batch, gen):
                opt.zero_grad()
                loss = lossf(m(xt[b]), yt[b])
                loss.backward()
                before = {k: m.params[k].detach().clone() for k in w_keys}
                grads = {k: m.params[k].grad.detach().clone() for k in w_keys}
                opt.step()
                for k in w_keys:
                    loc[k] -= (m.params[k].detach() - before[k]) * grads[k]
                losses.append(loss.item())
        glob = {k: (m.params[k].detach() - w0[k]) ** 2 for k in w_keys}
        sizes = {int(k): m.params[k].numel() for k in w_keys}
        if selection == "full":
            masks = None
        elif selection == "random":
            masks = random_masks(sizes, budget, seed)
        elif selection in ("dpu", "global"):
            lam_ = 1.0 if selection == "global" else lam
            sc = dpu_scores({int(k): loc[k].double().numpy().reshape(-1) for k in w_keys},
                            {int(k): glob[k].double().numpy().reshape(-1) for k in w_keys}, lam_)
            masks = select_topk(sc, budget)
        else:
            raise ValueError(f"unknown selection '{selection}'")
        tmask = None
        if masks is not None:
            tmask = {k: torch.as_tensor(masks[int(k)].reshape(tuple(m.params[k].shape)))
                     for k in w_keys}
            with torch.no_grad():
                if rewind == "all":          # everything back to w0, biases included
                    for k, p in m.params.items():
                        p.copy_(w0[k])
                else:                        # only the unselected weights
                    for k in w_keys:
                        m.params[k].copy_(torch.where(tmask[k], m.params[k], w0[k]))
        if finetune_lr is None:
            finetune_lr = lr if rewind == "all" else lr / 3
        opt = torch.optim.Adam(m.parameters(), lr=finetune_lr)
        for _ in range(finetune_epochs):
            for b in _batches(len(xt), batch, gen):
                opt.zero_grad()
                loss = lossf(m(xt[b]), yt[b])
                loss.backward()
                if tmask is not None:
                    for k in w_keys:
                        m.params[k].grad *= tmask[k]
                opt.step()
                if tmask is not None:
                    with torch.no_grad():
                        for k in w_keys:
                            m.params[k].copy_(torch.where(tmask[k], m.params[k], w0[k]))
                losses.append(loss.item())
        floats = m.store_floats()
        new_q = quantize_in_scales(graph, floats)
        if masks is not None:
            for k in w_keys:
                i = int(k)
                new_q[i] = np.where(masks[i], new_q[i], st.tensors[i].data.astype(np.int64))
        selected = int(sum(mk.sum() for mk in masks.values())) if masks is not None \
            else int(sum(sizes.values()))
        with torch.no_grad():
            acc = float((m(xt).argmax(1) == yt).float().mean())
        stats = dict(selection=selection, budget=budget if masks is not None else 1.0, lam=lam,
                     epochs=epochs, finetune_epochs=finetune_epochs, final_loss=losses[-1]
                     if losses else None, train_accuracy_float_weights=acc,
                     weights_total=int(sum(sizes.values())), selected=selected)
        return DPUResult(new_q, floats, masks, selected, stats)
    finally:
        torch.set_num_threads(threads)

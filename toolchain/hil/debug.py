"""Divergence finder: fetch the device's intermediate tensors layer by layer for one
sample and name the first layer whose bytes differ from the reference's
(toolchain.ir.reference with keep_intermediates=True, which equals TFLM's)."""
from __future__ import annotations

import numpy as np

from toolchain.errors import LinkError
from toolchain.ir.graph import Graph


def find_divergence(client, graph: Graph, reference, xq: np.ndarray, sample: int,
                    max_positions: int = 10) -> dict:
    """Run sample `xq` on the device, then compare each layer's output with the host's.

    Returns a JSON-ready dict: first_layer (index, name, type, tensor, shape), count of
    differing values, positions (NHWC indices), device/host values there, and the
    layers checked. first_layer is None when every layer agrees."""
    want = reference.intermediates(xq)
    client.infer(np.asarray(xq, np.int8).tobytes())
    checked = []
    for k, op in enumerate(graph.ops):
        name = op.outputs[0]
        t = graph.t(name)
        ref = np.asarray(want[name]).astype(np.int8).reshape(-1)
        try:
            raw = client.layer_output(k)
        except LinkError as e:
            return dict(sample=sample, first_layer=None, checked=checked,
                        message=f"could not read layer {k} ({op.name}) from the device: {e}",
                        error=str(e))
        got = np.frombuffer(bytes(raw), np.int8)
        row = dict(index=k, name=op.name, type=op.type, tensor=name, shape=list(t.shape))
        if got.size == 0 and ref.size:   # inside a streamed segment: not kept in the arena
            row.update(equal=None, count=None, streamed=True)
            checked.append(row)
            continue
        if got.size != ref.size:
            row.update(equal=False, count=None)
            checked.append(row)
            return dict(sample=sample, first_layer=row, checked=checked,
                        count=None, positions=[],
                        message=(f"layer {k} '{op.name}' ({op.type}): the device returned "
                                 f"{got.size} bytes for tensor '{name}', the reference has "
                                 f"{ref.size} (sample {sample})"))
        bad = np.flatnonzero(got != ref)
        row.update(equal=not len(bad), count=int(len(bad)))
        checked.append(row)
        if len(bad):
            pos = [list(map(int, np.unravel_index(int(i), t.shape))) for i in bad[:max_positions]]
            diffs = np.abs(got[bad].astype(np.int16) - ref[bad].astype(np.int16))
            shown = ", ".join("[" + ",".join(map(str, p)) + "]" for p in pos)
            more = f" and {len(bad) - len(pos)} more" if len(bad) > len(pos) else ""
            return dict(sample=sample, first_layer=row, checked=checked, count=int(len(bad)),
                        size=int(ref.size), positions=pos,
                        flat_positions=[int(i) for i in bad[:max_positions]],
                        device_values=got[bad[:max_positions]].tolist(),
                        host_values=ref[bad[:max_positions]].tolist(),
                        max_abs_diff=int(diffs.max()),
                        message=(f"first differing layer: {k} '{op.name}' ({op.type}) -> "
                                 f"'{name}' {list(t.shape)}: {len(bad)}/{ref.size} values "
                                 f"differ (max abs {int(diffs.max())}) at {shown}{more} "
                                 f"(sample {sample})"))
    return dict(sample=sample, first_layer=None, checked=checked, count=0, positions=[],
                message=f"all {len(graph.ops)} layers agree with the reference on sample "
                        f"{sample}")

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
    xq = np.asarray(xq)
    client.infer(xq.astype(xq.dtype.newbyteorder("<")).tobytes())
    checked = []
    for k, op in enumerate(graph.ops):
        name = op.outputs[0]
        t = graph.t(name)
        dt = np.dtype("<i2") if t.dtype == "int16" else np.dtype(np.int8)
        ref = np.asarray(want[name]).astype(dt).reshape(-1)
        try:
            raw = client.layer_output(k)
        except LinkError as e:
            return dict(sample=sample, first_layer=None, checked=checked,
                        message=f"could not read layer {k} ({op.name}) from the device: {e}",
                        error=str(e))
        raw = bytes(raw)
        got = np.frombuffer(raw[:len(raw) - len(raw) % dt.itemsize], dt)
        row = dict(index=k, name=op.name, type=op.type, tensor=name, shape=list(t.shape))
        if len(raw) == 0 and ref.size:   # inside a streamed segment: not kept in the arena
            row.update(equal=None, count=None, streamed=True)
            checked.append(row)
            continue
        if len(raw) != ref.nbytes:
            row.update(equal=False, count=None)
            checked.append(row)
            return dict(sample=sample, first_layer=row, checked=checked,
                        count=None, positions=[],
                        message=(f"layer {k} '{op.name}' ({op.type}): the device returned "
                                 f"{len(raw)} bytes for tensor '{name}', the reference has "
                                 f"{ref.nbytes} (sample {sample})"))
        bad = np.flatnonzero(got != ref)
        row.update(equal=not len(bad), count=int(len(bad)))
        checked.append(row)
        if len(bad):
            pos = [list(map(int, np.unravel_index(int(i), t.shape))) for i in bad[:max_positions]]
            diffs = np.abs(got[bad].astype(np.int32) - ref[bad].astype(np.int32))
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

"""Input encodings of spiking models (docs/snn.md, "Encodings").

All arrays here are in IR layout per sample (NHWC without batch, or flat); the PRNG
walks the elements in that (row-major) order, which is the device input order.

- constant: the same analog input x every step.
- rate: x is clipped to [0, 1] and quantized to a level q = floor(x*255 + 0.5) (uint8,
  what the device receives); per sample a xorshift32 state s0 = sample_seed(seed, i);
  for step t = 0..T-1, for element j in order: s = xorshift32(s); spike iff
  (s >> 16) < thr(q_j) with thr(q) = (q*65536 + 127) // 255 (q = 0 never, 255 always).
- events: spikes given per step, from an .npz (read_events): a dense bool array
  `spikes` [N, T, *shape] or triples `events` [K, 3] = (sample, step, flat index in the
  NIR (channel-first) input order) with `shape` (the NIR per-sample shape), and optional
  `timesteps`, `n` (number of samples) and labels `y`.
"""
from __future__ import annotations

import os

import numpy as np

from toolchain.ir.graph import IRError

ENCODINGS = ("constant", "rate", "events")
GOLDEN = 0x9E3779B9


def xorshift32(s: np.ndarray) -> np.ndarray:
    """One Marsaglia xorshift32 step (13, 17, 5) on uint32 states (vectorised)."""
    s = np.asarray(s, np.uint32)
    s = s ^ (s << np.uint32(13))
    s = s ^ (s >> np.uint32(17))
    s = s ^ (s << np.uint32(5))
    return s


def sample_seed(seed: int, index) -> np.ndarray:
    """Initial PRNG state of sample `index` (uint32, never 0):
    (seed XOR index*0x9E3779B9) mod 2^32, 0 replaced by 0x9E3779B9."""
    idx = np.asarray(index, np.uint64)
    s = ((np.uint64(seed & 0xFFFFFFFF) ^ (idx * np.uint64(GOLDEN))) & np.uint64(0xFFFFFFFF))
    s = s.astype(np.uint32)
    return np.where(s == 0, np.uint32(GOLDEN), s).astype(np.uint32)


def rate_levels(x) -> np.ndarray:
    """Analog input -> uint8 rate level q = floor(clip(x, 0, 1) * 255 + 0.5)."""
    x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
    return np.floor(x * 255.0 + 0.5).astype(np.uint8)


def rate_thresholds(q) -> np.ndarray:
    """uint8 level -> 17-bit threshold (q*65536 + 127) // 255 in [0, 65536]."""
    q = np.asarray(q, np.int64)
    return ((q * 65536 + 127) // 255).astype(np.int64)


def rate_spikes(q: np.ndarray, timesteps: int, seeds: np.ndarray):
    """Yield the rate-coded spikes [N, ...] (bool) of each step; q: uint8 levels
    [N, ...], seeds: uint32 initial states [N]."""
    n = q.shape[0]
    thr = rate_thresholds(q.reshape(n, -1))
    m = thr.shape[1]
    s = np.asarray(seeds, np.uint32).copy()
    for _ in range(timesteps):
        out = np.empty((n, m), bool)
        for j in range(m):
            s = xorshift32(s)
            out[:, j] = (s >> np.uint32(16)).astype(np.int64) < thr[:, j]
        yield out.reshape(q.shape)


def encode(x: np.ndarray, timesteps: int, encoding: str = "constant", seed: int = 0,
           first_index: int = 0):
    """Yield the input [N, ...] of each of the T steps (float32, IR layout).

    constant: x itself; rate: x are analog values in [0, 1] (or uint8 levels if x is
    uint8); events: x is [N, T, ...] bool/0-1 spikes. first_index: the global index of
    x[0] (for the rate-coding seed of each sample)."""
    if encoding not in ENCODINGS:
        raise IRError(f"unknown input encoding '{encoding}'; expected one of "
                      f"{', '.join(ENCODINGS)}")
    x = np.asarray(x)
    if encoding == "constant":
        xf = x.astype(np.float32)
        for _ in range(timesteps):
            yield xf
    elif encoding == "rate":
        q = x if x.dtype == np.uint8 else rate_levels(x)
        seeds = sample_seed(seed, np.arange(first_index, first_index + x.shape[0]))
        for s in rate_spikes(q, timesteps, seeds):
            yield s.astype(np.float32)
    else:
        if x.ndim < 2 or x.shape[1] < timesteps:
            raise IRError(f"event input has shape {x.shape}: need [N, T >= {timesteps}, ...]")
        for t in range(timesteps):
            yield (x[:, t] != 0).astype(np.float32)


def read_events(path, shape=None) -> tuple[np.ndarray, np.ndarray | None]:
    """(dense spikes [N, T, *shape] bool in NIR order, labels or None) from an .npz with
    `spikes` (dense) or `events` (K x 3 triples sample, step, flat index) + `shape`.
    Each failure is one IRError line naming the file."""
    p = os.fspath(path)
    try:
        z = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise IRError(f"cannot read event file {p}: no such file") from None
    except Exception as e:  # noqa: BLE001
        raise IRError(f"cannot read event file {p}: not a valid .npz ({type(e).__name__})") from None
    with z:
        y = np.asarray(z["y"]) if "y" in z.files else None
        if "spikes" in z.files:
            s = np.asarray(z["spikes"])
            if s.ndim < 3:
                raise IRError(f"event file {p}: 'spikes' has shape {s.shape}, expected "
                              "[N, T, ...]")
            if shape is not None and tuple(s.shape[2:]) != tuple(shape):
                raise IRError(f"event file {p}: spikes per step have shape {s.shape[2:]}, the "
                              f"model input is {tuple(shape)}")
            if s.dtype != bool and not np.isin(s, (0, 1)).all():
                raise IRError(f"event file {p}: 'spikes' holds values other than 0 and 1")
            return s.astype(bool), y
        if "events" not in z.files:
            raise IRError(f"event file {p} has neither 'spikes' nor 'events' (found: "
                          f"{', '.join(z.files) or 'none'})")
        ev = np.asarray(z["events"])
        if ev.ndim != 2 or ev.shape[1] != 3 or not np.issubdtype(ev.dtype, np.integer):
            raise IRError(f"event file {p}: 'events' has shape {ev.shape} ({ev.dtype}), "
                          "expected integer [K, 3] (sample, step, index)")
        fshape = tuple(int(d) for d in z["shape"]) if "shape" in z.files else shape
        if fshape is None:
            raise IRError(f"event file {p}: 'events' needs 'shape' (per-sample input shape)")
        if shape is not None and tuple(fshape) != tuple(shape):
            raise IRError(f"event file {p}: shape {tuple(fshape)} differs from the model "
                          f"input {tuple(shape)}")
        size = int(np.prod(fshape))
        n = int(z["n"]) if "n" in z.files else (int(ev[:, 0].max()) + 1 if len(ev) else 0)
        t = int(z["timesteps"]) if "timesteps" in z.files else (
            int(ev[:, 1].max()) + 1 if len(ev) else 0)
        if len(ev) and (ev.min(axis=0) < 0).any() or len(ev) and (
                ev[:, 0].max() >= n or ev[:, 1].max() >= t or ev[:, 2].max() >= size):
            raise IRError(f"event file {p}: an event lies outside {n} samples x {t} steps x "
                          f"{size} inputs")
        dense = np.zeros((n, t, size), bool)
        dense[ev[:, 0], ev[:, 1], ev[:, 2]] = True
        return dense.reshape(n, t, *fshape), y

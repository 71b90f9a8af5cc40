"""ctypes bridge to the SNN kernels of the host-built runtime (firmware_templates/runtime
/snn.c): CKernels has the interface of toolchain.snn.fixed_point.NumpyKernels, so
run_fixed(q, x, T, kernels=CKernels(lib)) runs a whole network through the C kernels."""
from __future__ import annotations

import ctypes as C

import numpy as np

from kernel_host import Dims, PoolParams, host_lib, ptr  # noqa: F401

SnnConvParams = type("SnnConvParams", (C.Structure,), {"_fields_": [
    (f, C.c_int32) for f in ("stride_h", "stride_w", "pad_h", "pad_w", "dilation_h",
                             "dilation_w", "groups")]})
P32 = C.POINTER(C.c_int32)


class SnnNeuron(C.Structure):
    _fields_ = [("channels", C.c_int32), ("frac_bits", C.c_int32),
                ("reset_subtract", C.c_int32), ("beta", P32), ("alpha", P32), ("thr", P32),
                ("vreset", P32), ("leak", P32)]


def fc_weights_t(w):
    """IR [out, in] -> column-contiguous [in][out] int8."""
    return np.ascontiguousarray(np.asarray(w).T.astype(np.int8))


def conv_weights_g(w, groups):
    """IR OHWI (I = in/groups) -> [groups][kh][kw][in/groups][out/groups] int8."""
    o, kh, kw, ipg = w.shape
    return np.ascontiguousarray(np.asarray(w).reshape(groups, o // groups, kh, kw, ipg)
                                .transpose(0, 2, 3, 4, 1).astype(np.int8))


def _i32(a):
    return np.ascontiguousarray(np.asarray(a, np.int64).astype(np.int32))


class CKernels:
    def __init__(self, lib=None):
        self.lib = lib or host_lib("portable")
        self.events = 0
        for fn in ("mcu_snn_fc_events_s8", "mcu_snn_conv_events_s8", "mcu_snn_lif_s32",
                   "mcu_snn_lif_s16", "mcu_snn_cuba_lif_s32", "mcu_snn_cuba_lif_s16",
                   "mcu_snn_threshold", "mcu_snn_rate_encode"):
            getattr(self.lib, fn).restype = C.c_int32
        self.lib.mcu_snn_xorshift32.restype = C.c_uint32
        self.lib.mcu_snn_xorshift32.argtypes = [C.c_uint32]
        self.lib.mcu_snn_sample_seed.restype = C.c_uint32
        self.lib.mcu_snn_sample_seed.argtypes = [C.c_uint32, C.c_uint32]

    def fc_acc(self, x, w, b, dense=False):
        n = x.shape[0]
        xi = np.ascontiguousarray(x.reshape(n, -1).astype(np.int8))
        wt = fc_weights_t(w)
        bb = None if b is None else _i32(b)
        out = np.zeros((n, w.shape[0]), np.int32)
        fn = self.lib.mcu_snn_fc_dense_s8 if dense else self.lib.mcu_snn_fc_events_s8
        for s in range(n):
            r = fn(xi.shape[1], w.shape[0], ptr(xi[s]), ptr(wt), ptr(bb, C.c_int32),
                   ptr(out[s], C.c_int32))
            if not dense:
                self.events += r
        return out.astype(np.int64)

    def conv_acc(self, p, x, w, b, out_hw):
        n, h, wd, c = x.shape
        o, kh, kw, ipg = w.shape
        xi = np.ascontiguousarray(x.astype(np.int8))
        wg = conv_weights_g(w, p["groups"])
        bb = None if b is None else _i32(b)
        prm = SnnConvParams(*(int(p[k]) for k, _ in SnnConvParams._fields_))
        out = np.zeros((n, *out_hw, o), np.int32)
        for s in range(n):
            self.events += self.lib.mcu_snn_conv_events_s8(
                C.byref(prm), C.byref(Dims(1, h, wd, c)), ptr(xi[s]), C.byref(Dims(o, kh, kw, ipg)),
                ptr(wg), ptr(bb, C.c_int32), C.byref(Dims(1, *out_hw, o)), ptr(out[s], C.c_int32))
        return out.astype(np.int64)

    def sum_pool(self, p, x, out_hw):
        n, h, w, c = x.shape
        xi = np.ascontiguousarray(x.astype(np.int8))
        prm = PoolParams(p["stride_h"], p["stride_w"], p["filter_h"], p["filter_w"],
                         p["pad_h"], p["pad_w"], -128, 127)
        out = np.zeros((n, *out_hw, c), np.int8)
        for s in range(n):
            self.lib.mcu_snn_sumpool_s8(C.byref(prm), C.byref(Dims(1, h, w, c)), ptr(xi[s]),
                                        C.byref(Dims(1, *out_hw, c)), ptr(out[s]))
        return out.astype(np.int64)

    def neuron_step(self, p, acc, state):
        kind, bits = p["kind"], p["state_bits"]
        n = acc.shape[0]
        ch = acc.shape[-1]
        size = int(np.prod(acc.shape[1:]))
        keep = {}

        def arr(k):
            a = _i32(np.broadcast_to(np.asarray(p.get(k, 0), np.int64), (ch,)))
            keep[k] = a
            return ptr(a, C.c_int32)
        prm = SnnNeuron(ch, int(p["frac_bits"]), int(p.get("reset") == "subtract"), arr("beta"),
                        arr("alpha"), arr("thr"), arr("vreset"), arr("leak"))
        a32 = np.ascontiguousarray(acc.astype(np.int32))
        st_t = np.int32 if bits == 32 else np.int16
        ctype = C.c_int32 if bits == 32 else C.c_int16
        sfx = "s32" if bits == 32 else "s16"
        sts = [np.ascontiguousarray(s.astype(st_t)) for s in state]
        spikes = np.zeros(acc.shape, np.int8)
        L = self.lib
        for s in range(n):
            a = ptr(a32[s], C.c_int32)
            if kind in ("LIF", "IF"):
                getattr(L, f"mcu_snn_lif_{sfx}")(C.byref(prm), size, a, ptr(sts[0][s], ctype),
                                                 ptr(spikes[s]))
            elif kind == "CUBA_LIF":
                getattr(L, f"mcu_snn_cuba_lif_{sfx}")(C.byref(prm), size, a, ptr(sts[0][s], ctype),
                                                      ptr(sts[1][s], ctype), ptr(spikes[s]))
            elif kind == "LI":
                getattr(L, f"mcu_snn_li_{sfx}")(C.byref(prm), size, a, ptr(sts[0][s], ctype))
            elif kind == "CUBA_LI":
                getattr(L, f"mcu_snn_cuba_li_{sfx}")(C.byref(prm), size, a, ptr(sts[0][s], ctype),
                                                     ptr(sts[1][s], ctype))
            elif kind == "THRESHOLD":
                L.mcu_snn_threshold(C.byref(prm), size, a, ptr(spikes[s]))
            else:
                raise NotImplementedError(kind)
        for j, s in enumerate(sts):
            state[j] = s.astype(np.int64)
        if kind in ("LI", "CUBA_LI"):
            return state[-1]
        return spikes.astype(np.int64)

    def rate_spikes(self, levels: np.ndarray, timesteps: int, seed: int, first_index: int = 0):
        """[T, N, m] spikes of uint8 levels [N, m] through the C PRNG."""
        n, m = levels.shape
        lv = np.ascontiguousarray(levels.astype(np.uint8))
        thr = np.zeros((n, m), np.uint32)
        out = np.zeros((timesteps, n, m), np.int8)
        for s in range(n):
            self.lib.mcu_snn_rate_thresholds(m, lv[s].ctypes.data_as(C.POINTER(C.c_uint8)),
                                             thr[s].ctypes.data_as(C.POINTER(C.c_uint32)))
            st = C.c_uint32(self.lib.mcu_snn_sample_seed(seed & 0xFFFFFFFF, first_index + s))
            for t in range(timesteps):
                self.lib.mcu_snn_rate_encode(m, thr[s].ctypes.data_as(C.POINTER(C.c_uint32)),
                                             C.byref(st), ptr(out[t, s]))
        return out

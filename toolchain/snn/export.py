"""C export of a fixed-point spiking network for other C projects (`mcu convert
MODEL.nir`): <name>.h declares every quantized parameter with its layout and the
semantics of one time step; <name>.c defines them as const arrays (flash). The layouts
are the ones firmware_templates/runtime/snn.c takes, so a project can call those kernels
(or its own) with these arrays; `mcu build MODEL.nir` generates the whole model
instead (toolchain/snn/codegen.py)."""
from __future__ import annotations

import os

import numpy as np

from toolchain.ir.graph import Graph

from .float_sim import is_spiking, role


def _arr(vals, per_line: int = 20) -> str:
    v = [str(int(x)) for x in np.asarray(vals).ravel()]
    return ",\n    ".join(", ".join(v[i:i + per_line]) for i in range(0, len(v), per_line)) or "0"


def _farr(vals, per_line: int = 8) -> str:
    v = [f"{float(x):.9g}f" for x in np.asarray(vals, np.float64).ravel()]
    return ",\n    ".join(", ".join(v[i:i + per_line]) for i in range(0, len(v), per_line)) or "0"


SEMANTICS = """\
 * One sample = T time steps; zero every neuron state first. In each step the layers run
 * in order (a spike reaches the next layer in the same step):
 *   synapse (FC / conv):  acc[c] = bias[c] + sum of w * x over the inputs  (int32)
 *       x: int8 spikes 0/1, pooled spike counts, or the int8 analog input
 *       x_q = clamp(round(x / INPUT_SCALE), -127, 127); on constant analog input the
 *       synapse can run once per sample (the same acc every step).
 *   neuron: I = acc << F  (F < 0: (acc + 2^(-F-1)) >> -F), F = <layer>_FRAC_BITS
 *       mulq15(b, v) = (b * v + 2^14) >> 15   (arithmetic shift)
 *       fired = v_prev > thr                 (strictly; decided before the update)
 *       LIF/IF subtract: v = mulq15(beta, v) + I + leak - (fired ? thr : 0)
 *       LIF/IF zero:     v = mulq15(beta, fired ? vreset : v) + I + leak
 *       CUBA_LIF:        i = sat(mulq15(alpha, i) + I); then as LIF with i for I, except
 *                        zero reset: v = fired ? vreset : mulq15(beta, v) + i + leak
 *       LI / CUBA_LI:    v = sat(mulq15(beta, v) + I + leak) (+ the i update); output v
 *       THRESHOLD:       spike = I > thr (no state)
 *       every state write saturates to the state type (int16 or int32); the arithmetic
 *       in between is exact (64-bit). spike = v > thr.
 *   sum pool: the sum of the window's spikes (int8; padding counts as 0).
 * Outputs: the output layer's spikes summed over the T steps (an LI readout: its final v;
 * real value = v * <layer>_V_SCALE[c]). Rate-coded input: docs/snn.md "Encodings".
 * Per-channel arrays are indexed by the channel (the last, fastest IR dimension);
 * tensors are NHWC (row-major, channel last) or flat [N]."""


def write_c_export(q: Graph, out_dir, name: str, timesteps: int) -> list[str]:
    fx = q.meta["snn"]["fixed"]
    N = name.upper()
    h, c = [], []
    inp = q.t(q.inputs[0])
    out = q.t(q.outputs[0])
    h.append(f"""/* {name}.h: fixed-point spiking network '{q.name}' exported by `mcu convert`
 * (toolchain/snn/export.py). Model hash {q.model_hash()[:16]} (fixed-point IR).
 * Input: {inp.size} values, IR shape {list(inp.shape[1:])} (NIR {list(q.meta['snn']['input_nir_shape'])}
 * channel-first -> NHWC), {fx['encoding']} encoding; output: {out.size} values.
 *
{SEMANTICS}
 */
#ifndef {N}_H
#define {N}_H
#include <stdint.h>

#define {N}_TIMESTEPS {timesteps}
#define {N}_INPUT_SIZE {inp.size}
#define {N}_OUTPUT_SIZE {out.size}
#define {N}_ENCODING "{fx['encoding']}"
#define {N}_INPUT_SCALE {float(fx['input_scale']):.9g}f   /* real value of one input step */
#define {N}_RATE_SEED {int(fx['seed'])}u
#define {N}_OUTPUT_IS_SPIKES {int(is_spiking(q.producers()[q.outputs[0]].type))}
#define {N}_NUM_LAYERS {len(q.ops)}
""")
    c.append(f'/* {name}.c: parameters of \'{q.name}\' (see {name}.h). Do not edit. */\n'
             f'#include "{name}.h"\n')
    for k, op in enumerate(q.ops):
        L = f"{N}_L{k}"
        sym = f"{name}_l{k}"
        o = q.t(op.outputs[0])
        r = role(op.type)
        h.append(f"/* layer {k}: {op.type} '{op.name}' -> {list(o.shape[1:])} */")
        if r == "synapse":
            w = np.asarray(q.t(op.inputs[1]).data)
            s_w = np.asarray(q.t(op.inputs[1]).quant.scale, np.float64)
            if op.type == "FULLY_CONNECTED":
                data = np.ascontiguousarray(w.T).astype(np.int8)
                h.append(f"#define {L}_IN {w.shape[1]}\n#define {L}_OUT {w.shape[0]}\n"
                         f"/* weights column-contiguous [IN][OUT]: w[j * OUT + c] is input j "
                         f"to output c */")
            else:
                oc, kh, kw, ipg = w.shape
                gr = int(op.attr("groups"))
                data = np.ascontiguousarray(w.reshape(gr, oc // gr, kh, kw, ipg)
                                            .transpose(0, 2, 3, 4, 1)).astype(np.int8)
                ish = q.t(op.inputs[0]).shape
                h.append(f"#define {L}_IN_H {ish[1]}\n#define {L}_IN_W {ish[2]}\n"
                         f"#define {L}_IN_C {ish[3]}\n#define {L}_OUT_H {o.shape[1]}\n"
                         f"#define {L}_OUT_W {o.shape[2]}\n#define {L}_OUT_C {oc}\n"
                         f"#define {L}_KH {kh}\n#define {L}_KW {kw}\n#define {L}_GROUPS {gr}\n"
                         + "".join(f"#define {L}_{a.upper()} {int(op.attr(a))}\n" for a in
                                   ("stride_h", "stride_w", "pad_h", "pad_w", "dilation_h",
                                    "dilation_w"))
                         + f"/* weights [GROUPS][KH][KW][IN_C/GROUPS][OUT_C/GROUPS] (scatter "
                           f"form); zero padding PAD_H/PAD_W at the top/left */")
            h.append(f"extern const int8_t {sym}_weight[{data.size}];")
            c.append(f"const int8_t {sym}_weight[{data.size}] __attribute__((aligned(4))) = {{\n"
                     f"    {_arr(data)}}};")
            h.append(f"extern const float {sym}_w_scale[{s_w.size}];   /* real weight per step, "
                     f"per output channel */")
            c.append(f"const float {sym}_w_scale[{s_w.size}] = {{\n    {_farr(s_w)}}};")
            if len(op.inputs) > 2 and op.inputs[2]:
                b = np.asarray(q.t(op.inputs[2]).data).astype(np.int32)
                h.append(f"extern const int32_t {sym}_bias[{b.size}];   /* accumulator units "
                         f"w_scale[c] * {float(op.attrs.get('in_scale', 1.0)):.6g} */")
                c.append(f"const int32_t {sym}_bias[{b.size}] = {{\n    {_arr(b)}}};")
        elif r == "neuron":
            a = op.attrs
            ch = o.shape[-1]
            states = ", ".join(f"{s.rsplit('.', 1)[-1]} int{a['state_bits']} [{o.size}]"
                               for s in op.inputs[1:]) or "none"
            h.append(f"#define {L}_KIND \"{op.type}\"\n#define {L}_SIZE {o.size}\n"
                     f"#define {L}_CHANNELS {ch}\n#define {L}_STATE_BITS {a['state_bits']}\n"
                     f"#define {L}_FRAC_BITS {a['frac_bits']}\n"
                     f"#define {L}_RESET_SUBTRACT {int(a.get('reset') == 'subtract')}\n"
                     f"/* state (zeroed per sample): {states} */")
            for key, default in (("beta", 32768), ("alpha", 0), ("thr", 0), ("vreset", 0),
                                 ("leak", 0)):
                v = np.broadcast_to(np.asarray(a.get(key, default), np.int64), (ch,))
                note = {"beta": "Q15 decay", "alpha": "Q15 synaptic decay",
                        "thr": "threshold", "vreset": "reset value",
                        "leak": "leak per step"}[key]
                h.append(f"extern const int32_t {sym}_{key}[{ch}];   /* {note} */")
                c.append(f"const int32_t {sym}_{key}[{ch}] = {{\n    {_arr(v)}}};")
            vs = np.broadcast_to(np.asarray(a["v_scale"], np.float64), (ch,))
            h.append(f"extern const float {sym}_v_scale[{ch}];   /* real membrane per unit */")
            c.append(f"const float {sym}_v_scale[{ch}] = {{\n    {_farr(vs)}}};")
        elif r == "pool":
            h.append(f"#define {L}_FILTER_H {op.attr('filter_h')}\n"
                     f"#define {L}_FILTER_W {op.attr('filter_w')}\n"
                     f"#define {L}_STRIDE_H {op.attr('stride_h')}\n"
                     f"#define {L}_STRIDE_W {op.attr('stride_w')}\n"
                     f"#define {L}_PAD_H {op.attr('pad_h')}\n#define {L}_PAD_W {op.attr('pad_w')}")
        else:
            h.append(f"/* {op.type}: the same bytes, viewed as {list(o.shape[1:])} */")
        h.append("")
    h.append(f"#endif /* {N}_H */\n")
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f"{name}.h"), os.path.join(out_dir, f"{name}.c")]
    for p, text in zip(paths, ("\n".join(h), "\n".join(c) + "\n")):
        with open(p, "w") as f:
            f.write(text)
    return paths

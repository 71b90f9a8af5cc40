"""Benchmark (not a test): our post-training int8 quantizer vs TensorFlow's TFLite converter.

    python -m toolchain.bench_quant [--seed 0] [--json bench_quant.json]

Trains the digits CNN (toolchain.examples.digits), converts it to the float IR,
quantizes it with our three calibration methods on the training inputs, and
scores each int8 model in the tflite-micro interpreter on the test split. When
TensorFlow is installed (`pip install -e '.[tf]'`), the same float graph is
rebuilt as a tf.keras model (same weights, same NHWC layout), converted with
TFLiteConverter (optimizations=DEFAULT, the same calibration inputs as the
representative dataset, int8 input/output) and scored the same way; without
TensorFlow that part is skipped with a message. Prints a table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _tflm_accuracy(tfl: bytes, x: np.ndarray, y: np.ndarray):
    from toolchain.tflm_oracle import TflmRunner
    r = TflmRunner(tfl)
    det = r.input_details(0)
    s, zp = det["quantization_parameters"]["scales"][0], \
        det["quantization_parameters"]["zero_points"][0]
    xq = np.clip(np.round(x / s) + zp, -128, 127).astype(np.int8)
    outs = np.concatenate([np.asarray(r.run([xq[i:i + 1]])[0]).reshape(1, -1)
                           for i in range(len(xq))])
    return float((outs.argmax(1) == y).mean()), outs


def graph_to_keras(graph):
    """Rebuild a float IR graph (NHWC, TFLite ops) as a tf.keras functional model."""
    import tensorflow as tf
    L = tf.keras.layers
    acts = {"NONE": None, "RELU": "relu", "RELU6": tf.nn.relu6}
    env = {}
    inp = tf.keras.Input(batch_size=1, shape=graph.t(graph.inputs[0]).shape[1:])
    env[graph.inputs[0]] = inp

    def c(name):
        return graph.t(name).data

    for op in graph.ops:
        x = env.get(op.inputs[0])
        a = acts[op.attrs.get("fused_activation", "NONE")]
        pad = str(op.attr("padding") or "VALID").lower()
        t = op.type
        if t == "CONV_2D":
            w = c(op.inputs[1])                                    # OHWI -> HWIO
            lyr = L.Conv2D(w.shape[0], w.shape[1:3], strides=(op.attr("stride_h"),
                           op.attr("stride_w")), padding=pad,
                           dilation_rate=(op.attr("dilation_h"), op.attr("dilation_w")),
                           activation=a)
            y = lyr(x)
            lyr.set_weights([w.transpose(1, 2, 3, 0), c(op.inputs[2])])
        elif t == "DEPTHWISE_CONV_2D":
            w = c(op.inputs[1])[0]                                 # HWO -> HW,C,dm
            dm = int(op.attr("depth_multiplier") or 1)
            lyr = L.DepthwiseConv2D(w.shape[:2], strides=(op.attr("stride_h"),
                                    op.attr("stride_w")), padding=pad, depth_multiplier=dm,
                                    dilation_rate=(op.attr("dilation_h"), op.attr("dilation_w")),
                                    activation=a)
            y = lyr(x)
            lyr.set_weights([w.reshape(w.shape[0], w.shape[1], -1, dm), c(op.inputs[2])])
        elif t == "FULLY_CONNECTED":
            w = c(op.inputs[1])
            has_b = len(op.inputs) > 2 and op.inputs[2]
            lyr = L.Dense(w.shape[0], activation=a, use_bias=bool(has_b))
            y = lyr(x)
            lyr.set_weights([w.T] + ([c(op.inputs[2])] if has_b else []))
        elif t in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            cls = L.MaxPooling2D if t == "MAX_POOL_2D" else L.AveragePooling2D
            y = cls((op.attr("filter_h"), op.attr("filter_w")),
                    (op.attr("stride_h"), op.attr("stride_w")), padding=pad)(x)
        elif t == "RESHAPE":
            y = L.Reshape(tuple(graph.t(op.outputs[0]).shape[1:]))(x)
        elif t == "SOFTMAX":
            y = L.Softmax()(x)
        elif t in ("ADD", "MUL"):
            other = env.get(op.inputs[1])
            if other is None:
                k = tf.constant(c(op.inputs[1]))
                y = L.Lambda(lambda v, k=k, t=t: v + k if t == "ADD" else v * k)(x)
            else:
                y = (L.Add() if t == "ADD" else L.Multiply())([x, other])
            if a is not None:
                y = L.Activation(a)(y)
        elif t == "CONCATENATION":
            y = L.Concatenate(axis=int(op.attr("axis")))([env[i] for i in op.inputs])
        elif t == "PAD":
            p = c(op.inputs[1]).tolist()
            y = L.ZeroPadding2D((tuple(p[1]), tuple(p[2])))(x)
        elif t == "MEAN":
            y = L.Lambda(lambda v, ax=tuple(c(op.inputs[1]).tolist()):
                         tf.reduce_mean(v, axis=ax, keepdims=True))(x)
        elif t == "RELU":
            y = L.ReLU()(x)
        elif t == "RELU6":
            y = L.ReLU(6.0)(x)
        else:
            raise NotImplementedError(f"{t} in graph_to_keras")
        env[op.outputs[0]] = y
    return tf.keras.Model(inp, env[graph.outputs[0]])


def tf_quantize(graph, calib: np.ndarray) -> bytes:
    import tensorflow as tf
    model = graph_to_keras(graph)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def rep():
        for i in range(len(calib)):
            yield [calib[i:i + 1].astype(np.float32)]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="bench_quant.json")
    args = ap.parse_args(argv)

    import torch
    from converters import from_torch
    from converters.quantize import quantize
    from converters.tflite_writer import write_tflite
    from toolchain.examples.digits import train_digits_cnn
    from toolchain.ir.float_eval import run_float

    t0 = time.time()
    model, (x_tr, y_tr, x_te, y_te) = train_digits_cnn(args.seed)
    g = from_torch(model, torch.from_numpy(x_tr[:1]))
    calib, xt = x_tr.transpose(0, 2, 3, 1), x_te.transpose(0, 2, 3, 1)
    res = dict(model="digits CNN (toolchain.examples.digits)", seed=args.seed,
               calibration_samples=int(len(calib)), test_samples=int(len(xt)),
               float_accuracy=float((run_float(g, xt)[g.outputs[0]].argmax(1) == y_te).mean()),
               ours={})
    outs = {}
    for method in ("minmax", "percentile", "mse"):
        t = time.time()
        q = quantize(g, calib, method=method)
        tfl = write_tflite(q)
        acc, outs[method] = _tflm_accuracy(tfl, xt, y_te)
        res["ours"][method] = dict(int8_accuracy_tflm=acc, seconds=round(time.time() - t, 2),
                                   tflite_bytes=len(tfl),
                                   input=q.meta["quantization"]["inputs"],
                                   output=q.meta["quantization"]["outputs"])
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        res["tensorflow"] = "not installed (pip install -e '.[tf]'); comparison skipped"
        print("TensorFlow is not installed: skipping the TFLite converter comparison "
              "(pip install -e '.[tf]').")
    else:
        t = time.time()
        tfl = tf_quantize(g, calib)
        acc, tf_out = _tflm_accuracy(tfl, xt, y_te)
        res["tensorflow"] = dict(version=tensorflow.__version__, int8_accuracy_tflm=acc,
                                 seconds=round(time.time() - t, 2), tflite_bytes=len(tfl),
                                 top1_agreement_with_ours_minmax=float(
                                     (tf_out.argmax(1) == outs["minmax"].argmax(1)).mean()),
                                 identical_outputs_with_ours_minmax=float(
                                     (tf_out == outs["minmax"]).all(1).mean()))
    res["seconds"] = round(time.time() - t0, 1)

    print(f"float accuracy: {100 * res['float_accuracy']:.2f} % ({len(xt)} test samples)")
    for m, r in res["ours"].items():
        print(f"ours {m:10s} int8 (TFLM): {100 * r['int8_accuracy_tflm']:.2f} %")
    if isinstance(res["tensorflow"], dict):
        r = res["tensorflow"]
        print(f"TensorFlow {r['version']} int8 (TFLM): {100 * r['int8_accuracy_tflm']:.2f} %, "
              f"top-1 agreement with ours (minmax) {100 * r['top1_agreement_with_ours_minmax']:.1f}"
              f" %, identical outputs {100 * r['identical_outputs_with_ours_minmax']:.1f} %")
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    print(f"wrote {args.json}")
    return res


if __name__ == "__main__":
    main()

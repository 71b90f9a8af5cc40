"""`make demo`: the whole flow on a small model, from a fresh clone, in about a minute.

  1. train a small CNN on sklearn's 8x8 digits in PyTorch (seconds, CPU), export ONNX
  2. convert it to int8 (the `mcu convert` path: PTQ, .tflite + C arrays)
  3. build firmware with the model for mps2-an386 (Cortex-M4F) and boot it in QEMU
  4. run `mcu hil` on the held-out split: every output checked byte for byte against
     tflite-micro, accuracy, instructions per inference, flash/RAM
  5. write the JSON and HTML reports

Everything goes under out/demo/. `python -m toolchain.demo [BOARD]`."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from toolchain.errors import USER_ERRORS

OUT = Path("out/demo")


def _step(n, total, msg, t0):
    print(f"[{n}/{total}] {msg} ({time.perf_counter() - t0:.1f} s)", flush=True)


def main(board: str = "mps2-an386", out: Path = OUT, limit: int | None = None) -> int:
    import numpy as np
    from toolchain.hil.runner import HilConfig, format_summary
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    total = 5

    # 1. train + export
    t = time.perf_counter()
    import torch
    from converters.torch_frontend import torch_to_onnx
    from toolchain.examples.digits import accuracy, train_digits_cnn
    model, (x_tr, y_tr, x_te, y_te) = train_digits_cnn(seed=0)
    onnx_path = out / "digits.onnx"
    onnx_path.write_bytes(torch_to_onnx(model, torch.from_numpy(x_tr[:1])).SerializeToString())
    np.savez(out / "calib.npz", x=x_tr[:300])
    np.savez(out / "test.npz", x=x_te, y=y_te)
    _step(1, total, f"trained the digits CNN in PyTorch: float accuracy "
                    f"{100 * accuracy(model, x_te, y_te):.2f} % on {len(x_te)} held-out samples; "
                    f"exported {onnx_path}", t)

    # 2. convert (mcu convert out/demo/digits.onnx --calib out/demo/calib.npz -o out/demo/int8)
    t = time.perf_counter()
    from converters.convert import convert
    conv = convert(onnx_path, calib=out / "calib.npz", out_dir=out / "int8",
                   log=lambda m: print("      " + m))
    tflite = out / "int8" / "model.tflite"
    fv = conv.get("float_vs_int8", {})
    _step(2, total, f"converted to int8 (mcu convert {onnx_path} --calib {out / 'calib.npz'} "
                    f"-o {out / 'int8'}): {conv['num_ops']} ops, {conv['params']:,} parameters, "
                    f"{conv['tflite_bytes']:,} B .tflite"
          + (f"; top-1 float/int8 agreement {100 * fv['top1_agreement']:.1f} % on the "
             f"calibration set" if "top1_agreement" in fv else ""), t)

    # 3. build + boot
    t = time.perf_counter()
    from toolchain.hil.session import HilDevice
    with HilDevice(tflite, board, log=lambda m: print("      " + m)) as dev:
        fw, info = dev.build, dev.info()
        _step(3, total, f"built firmware for {board}"
              + (" (reused)" if fw.cached else "") + f" and booted it "
              f"({dev.board.kind}, {dev.url})", t)
        print(f"      {fw.report().replace(chr(10), chr(10) + '      ')}")
        print(f"      device says: board {info.board}, firmware {info.build_id}, model "
              f"'{info.model_name or '?'}' {info.model_hash[:16]}, "
              f"{info.model_input_size} B in / {info.model_output_size} B out")
        rtt = []
        for _ in range(10):
            t1 = time.perf_counter()
            dev.device.link().echo(b"hello, Cortex-M")
            rtt.append(time.perf_counter() - t1)
        print(f"      link echo round trip: median {1e3 * sorted(rtt)[5]:.2f} ms")

        # 4. hil (mcu hil out/demo/int8/model.tflite --board B --data out/demo/test.npz)
        t = time.perf_counter()
        from toolchain.hil.api import run_hil
        res = run_hil(dev.model, out / "test.npz", device=dev,
                      config=HilConfig(limit=limit, progress=True),
                      json_path=out / "hil.json", html_path=out / "hil.html")
        _step(4, total, f"ran mcu hil {tflite} --board {board} --data {out / 'test.npz'}", t)
    print("      " + format_summary(res).replace("\n", "\n      "))
    print(f"[5/5] reports: {out / 'hil.json'} (summary + every sample) and {out / 'hil.html'} "
          f"(open it in a browser)")
    for f in res.failures():
        print(f"demo: check failed: {f}", file=sys.stderr)
    return 0 if res.passed else 1


if __name__ == "__main__":
    try:
        sys.exit(main(*sys.argv[1:2]))
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)

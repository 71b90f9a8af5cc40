"""Hardware-in-the-loop testing: run a data set on a device, compare every output with
the host oracle (tflite-micro, or the numpy reference where TFLM cannot run), and
report accuracy, agreement, latency and memory (terminal, JSON, HTML).

    from toolchain.hil import run_hil, HilConfig, format_summary
    res = run_hil("model.tflite", "data.npz", board="mps2-an386",
                  config=HilConfig(min_accuracy=0.9), json_path="hil.json")

Pieces: data (npz -> int8), reference (oracle), session (build/boot/connect,
HilDevice), runner (the loop, HilResult), debug (divergence finder), html (report),
pytest_plugin (fixtures for users' own HIL tests), eembc (MLPerf Tiny runner client)."""
from toolchain.hil.errors import CheckFailed, DataError, DeviceStopped, HilError, ModelMismatch
from toolchain.hil.runner import HilConfig, HilResult, format_summary, run_samples


def run_hil(*args, **kwargs):
    from toolchain.hil.api import run_hil as _run
    return _run(*args, **kwargs)


def HilDevice(*args, **kwargs):  # noqa: N802 - a lazy alias of the class
    from toolchain.hil.session import HilDevice as _D
    return _D(*args, **kwargs)


__all__ = ["run_hil", "HilConfig", "HilResult", "HilDevice", "format_summary", "run_samples",
           "HilError", "DataError", "ModelMismatch", "DeviceStopped", "CheckFailed"]

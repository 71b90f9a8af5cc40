"""pytest plugin (entry point `pytest11: mcu`): write your own hardware-in-the-loop tests.

    def test_digits_on_device(mcu_device):
        dev = mcu_device(model="out/model.tflite")        # built, booted, torn down for you
        y = dev.infer(x_float)                            # int8 output array
        assert dev.info().model_hash

    def test_bit_exact(mcu_device):
        dev = mcu_device(model="out/model.tflite")
        assert_bit_exact("out/model.tflite", dev, samples)   # from toolchain.hil.pytest_plugin

Options: --mcu-board NAME (default: $MCU_BOARD or the default board; `mcu boards`),
--mcu-port URL (a real board already flashed with the model's firmware: no build,
the model hash is checked). Devices are started once per (model, board, port, build
options) and shared by the tests of a session; they stop when the session ends.
--mcu-place NAME (a labgrid place on $LG_COORDINATOR, a glob like rack-* or a comma
list: the session acquires one idle place among them, waiting up to
--mcu-place-timeout, and releases it at the end; mcu_device then talks to its serial
port, board from its `board` tag). With pytest-xdist (`pytest -n N`) every worker is
its own process with its own devices: emulated boards are started per worker, and
worker gwK tries the K-th matching place first, so N workers spread over N places.
Fixtures: mcu_device (factory), mcu_board (the board name), mcu_place (the Lease or
None), mcu_worker (the xdist worker id, "master" without -n). Marker: @pytest.mark.mcu."""
from __future__ import annotations

import os

import pytest


def pytest_addoption(parser):
    g = parser.getgroup("mcu", "mcu hardware-in-the-loop")
    g.addoption("--mcu-board", default=None,
                help="board for mcu_device (default: $MCU_BOARD or the default board)")
    g.addoption("--mcu-port", default=None,
                help="pyserial URL of a real board already flashed with the model's firmware")
    g.addoption("--mcu-place", default=None,
                help="labgrid place(s) for mcu_device: NAME, a glob (rack-*) or A,B; one is "
                     "acquired per session (per pytest -n worker) and released at the end")
    g.addoption("--mcu-place-timeout", type=float, default=None,
                help="seconds to wait for a free place (default: as long as it takes)")


def pytest_configure(config):
    config.addinivalue_line("markers", "mcu: a hardware-in-the-loop test (uses mcu_device)")


@pytest.fixture(scope="session")
def mcu_board(pytestconfig) -> str:
    b = pytestconfig.getoption("mcu_board", None) or os.environ.get("MCU_BOARD")
    if b:
        return b
    from toolchain.boards import default_board_name
    return default_board_name()


@pytest.fixture(scope="session")
def mcu_worker() -> str:
    """The pytest-xdist worker id (gw0, gw1, ...), or "master" without -n."""
    return os.environ.get("PYTEST_XDIST_WORKER", "master")


def _worker_index(worker: str) -> int:
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


@pytest.fixture(scope="session")
def mcu_place(pytestconfig, mcu_worker):
    """The labgrid place of this session (or worker) from --mcu-place, or None."""
    spec = pytestconfig.getoption("mcu_place", None)
    if not spec:
        yield None
        return
    import atexit

    from toolchain.errors import USER_ERRORS
    from toolchain.farm import acquire_places, release_all, sigterm_as_interrupt
    pats = [p.strip() for p in spec.split(",") if p.strip()]
    with sigterm_as_interrupt():           # a session ended by SIGTERM tears down too
        try:
            leases = acquire_places(pats, 1,
                                    timeout=pytestconfig.getoption("mcu_place_timeout"),
                                    prefer=_worker_index(mcu_worker))
        except USER_ERRORS as e:
            pytest.fail(f"mcu_place: {e}", pytrace=False)
        atexit.register(release_all, leases)     # also when the session is cut short
        try:
            yield leases[0]
        finally:
            release_all(leases)


@pytest.fixture(scope="session")
def _mcu_pool():
    pool: dict = {}
    yield pool
    for dev in pool.values():
        dev.close()


@pytest.fixture
def mcu_device(request, mcu_board, mcu_place, _mcu_pool):
    """Factory: mcu_device(model=PATH_OR_GRAPH, board=None, port=None, **options) -> a
    started HilDevice (.infer(x), .infer_raw(xq), .info(), .model, .board). options go
    to HilDevice (test_build, defines, protocol, client=...). Problems starting the
    device fail the test with the one-line reason."""
    from toolchain.errors import USER_ERRORS
    from toolchain.hil.session import HilDevice
    port_opt = request.config.getoption("mcu_port", None)

    def factory(model, board: str | None = None, port: str | None = None, **options):
        if mcu_place is not None and not (port or port_opt):
            port = mcu_place.serial_url
            board = board or mcu_place.board
        board = board or mcu_board
        port = port or port_opt
        if "client" in options:       # injected clients are not shared
            return HilDevice(model, board, port=port, **options)
        key = (str(model) if not hasattr(model, "model_hash") else model.model_hash(),
               board, port, repr(sorted(options.items())))
        dev = _mcu_pool.get(key)
        if dev is not None and dev.device is not None and (dev.device.proc is None
                                                            or dev.device.alive):
            return dev
        try:
            dev = HilDevice(model, board, port=port, **options)
        except USER_ERRORS as e:
            pytest.fail(f"mcu_device: {e}", pytrace=False)
        _mcu_pool[key] = dev
        return dev

    return factory


def assert_bit_exact(model, device, samples, *, tolerance: int = 0,
                     debug_layer: bool = True) -> int:
    """Every sample's device output equals the host oracle's (tflite-micro, or the numpy
    reference where TFLM cannot run) byte for byte (or within `tolerance`).

    samples: float (quantized with the model's input parameters) or int8 arrays,
    one sample or a batch (N, ...) in the model's NHWC layout. On a difference the
    AssertionError names the sample, the differing positions and, with debug_layer,
    the first layer whose bytes differ on the device. Returns the count checked."""
    import numpy as np
    from toolchain.hil.reference import HostReference
    from toolchain.hil.session import load_int8_model
    m = load_int8_model(model)
    ref = HostReference(m.graph, m.tflite)
    x = np.asarray(samples)
    in_shape = tuple(m.in_tensor.shape[1:])
    if x.shape == in_shape or x.shape == (1,) + in_shape:
        x = x.reshape((1,) + in_shape)
    if tuple(x.shape[1:]) != in_shape:
        raise AssertionError(f"samples have shape {x.shape}; the model takes (N, "
                             f"{', '.join(map(str, in_shape))}) (NHWC)")
    for i in range(len(x)):
        xq = device.quantize(x[i])
        got, _ = device.infer_raw(xq)
        want = ref(xq)
        d = int(np.abs(got.astype(np.int16) - want.astype(np.int16)).max(initial=0))
        if d > tolerance:
            pos = np.flatnonzero(got != want)
            msg = (f"sample {i}: device output differs from {ref.name} at {len(pos)}/"
                   f"{want.size} positions {pos[:8].tolist()} (max abs {d}); device "
                   f"{got[pos[:8]].tolist()} vs reference {want[pos[:8]].tolist()}")
            if debug_layer and hasattr(device.client, "layer_output"):
                from toolchain.hil.debug import find_divergence
                try:
                    msg += "; " + find_divergence(device.client, m.graph, ref, xq, i)["message"]
                except Exception as e:  # noqa: BLE001 - the assertion is what matters
                    msg += f"; divergence finder failed: {e}"
            raise AssertionError(msg)
    return len(x)

"""The mcu pytest plugin (entry point pytest11: mcu): fixtures and assert_bit_exact,
used from a pytester project the way a user would, and directly by a test here."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hil_common import digits_model  # noqa: E402

from toolchain.hil.pytest_plugin import assert_bit_exact  # noqa: E402

pytest_plugins = ["pytester"]


def test_plugin_is_registered_by_entry_point(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("mcu")
    assert pytestconfig.getoption("mcu_board", "missing") != "missing"


def test_user_project_with_fake_client(pytester):
    model, data = digits_model()
    pytester.makepyfile(test_user=f"""
        import numpy as np, pytest
        from toolchain.hil.fake import FakeModelClient
        from toolchain.hil.session import load_int8_model
        from toolchain.hil.pytest_plugin import assert_bit_exact

        MODEL = {str(model)!r}
        X = np.load({str(data)!r})["x"][:6].transpose(0, 2, 3, 1)

        def test_board_option(mcu_board):
            assert mcu_board == "host"

        def test_infer_and_info(mcu_device):
            m = load_int8_model(MODEL)
            dev = mcu_device(model=MODEL, client=FakeModelClient(m.graph))
            y = dev.infer(X[0])
            assert y.shape == (1, 10) and y.dtype == np.int8
            assert dev.info().model_hash == m.hash

        def test_bit_exact(mcu_device):
            m = load_int8_model(MODEL)
            dev = mcu_device(model=MODEL, client=FakeModelClient(m.graph))
            assert assert_bit_exact(MODEL, dev, X) == 6

        def test_bit_exact_catches_a_broken_layer(mcu_device):
            m = load_int8_model(MODEL)
            dev = mcu_device(model=MODEL, client=FakeModelClient(
                m.graph, corrupt_layer=7, corrupt_positions=(3,), corrupt_xor=0x40))
            assert_bit_exact(MODEL, dev, X)
    """)
    r = pytester.runpytest_subprocess("--mcu-board", "host", "-q", "-p", "no:cacheprovider")
    r.assert_outcomes(passed=3, failed=1)
    r.stdout.fnmatch_lines(["*sample 0: device output differs from tflite-micro*"
                            "first differing layer: 7*SOFTMAX*"])


def test_wrong_model_fails_the_test_in_one_line(pytester):
    model, _ = digits_model()
    pytester.makepyfile(test_wrong=f"""
        from toolchain.hil.fake import FakeModelClient
        from toolchain.hil.session import load_int8_model
        def test_wrong(mcu_device):
            m = load_int8_model({str(model)!r})
            mcu_device(model={str(model)!r}, client=FakeModelClient(m.graph, model_hash="00" * 32))
    """)
    r = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*ModelMismatch: device at injected runs model*"])


def test_our_suite_uses_the_plugin(mcu_device):
    """A real HIL test of our own, on the host board (the firmware compiled natively)."""
    model, data = digits_model()
    try:
        from toolchain.hil.session import _model_client_class
        _model_client_class()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"model builds not available yet: {e}")
    dev = mcu_device(model=model, board="host")
    x = np.load(data)["x"][:8].transpose(0, 2, 3, 1)
    assert assert_bit_exact(model, dev, x) == 8

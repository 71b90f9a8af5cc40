"""MLPerf Tiny / EEMBC text protocol (firmware_templates/app/eembc.c), spoken exactly as
the EEMBC runner does (name%, profile%, db load N%, 31-byte db HEX% commands,
infer N W%, results%), on the host board and on QEMU."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hil_common import HAVE_CC, HAVE_QEMU, digits_model  # noqa: E402

from toolchain.build import build_firmware  # noqa: E402
from toolchain.devices import start_device  # noqa: E402
from toolchain.hil.eembc import DB_CHUNK, EembcClient, EembcError  # noqa: E402

# A stand-in model over model_iface.h: out[i] = (sum_j in[j] * (i + 1 + j % 3)) >> 6,
# and it clobbers its input like an arena that reuses the input buffer would.
FAKE_MODEL = r"""
#include <stdint.h>
#include "model_iface.h"
#include "mcu_proto.h"
static uint8_t in_buf[100];
static int8_t out_buf[10];
static const uint8_t hash[4] = {0xde, 0xad, 0xbe, 0xef};
const uint8_t *model_hash(void) { return hash; }
uint32_t model_hash_len(void) { return 4; }
const char *model_name(void) { return "fake"; }
uint32_t model_input_size(void) { return 100; }
uint32_t model_output_size(void) { return 10; }
uint8_t *model_input(void) { return in_buf; }
const uint8_t *model_output(void) { return (const uint8_t *)out_buf; }
float mcu_eembc_output_scale(void);
int32_t mcu_eembc_output_zero_point(void);
float mcu_eembc_output_scale(void) { return 0.5f; }
int32_t mcu_eembc_output_zero_point(void) { return -3; }
uint8_t model_invoke(void) {
    for (int i = 0; i < 10; i++) {
        int32_t acc = 0;
        for (int j = 0; j < 100; j++) acc += (int8_t)in_buf[j] * (i + 1 + j % 3);
        out_buf[i] = (int8_t)(acc >> 6);
    }
    for (int j = 0; j < 100; j++) in_buf[j] = 0x55;
    return MCU_ST_OK;
}
"""


def _expected(x: np.ndarray) -> np.ndarray:
    w = np.arange(1, 11)[:, None] + (np.arange(100) % 3)[None, :]
    return ((w * x.astype(np.int64)[None, :]).sum(1) >> 6).astype(np.int8)


BOARDS = [pytest.param("host", marks=pytest.mark.skipif(not HAVE_CC, reason="needs cc")),
          pytest.param("mps2-an386", marks=[pytest.mark.qemu, pytest.mark.skipif(
              not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")])]


class RecordingSerial:
    """Wraps the serial object to record what the host sent (to check the wire format)."""

    def __init__(self, ser):
        self._s, self.sent = ser, b""

    def write(self, b):
        self.sent += bytes(b)
        return self._s.write(b)

    def __getattr__(self, k):
        return getattr(self._s, k)

    def __setattr__(self, k, v):
        if k in ("_s", "sent"):
            object.__setattr__(self, k, v)
        else:
            setattr(self._s, k, v)


@pytest.mark.parametrize("board", BOARDS)
def test_eembc_protocol_with_a_stand_in_model(board, tmp_path):
    src = tmp_path / "fake_model.c"
    src.write_text(FAKE_MODEL)
    fw = build_firmware(board, tmp_path / "fw", extra_sources=[src], werror=True,
                        defines={"MCU_PROTOCOL_EEMBC": 1, "MCU_EEMBC_DB_SIZE": 100})
    with start_device(board, fw) as dev:
        rec = RecordingSerial(dev.link().ser)
        ee = EembcClient(rec, url=dev.url)
        assert ee.sync() == "mcu"
        if board != "host":  # QEMU waits for us: the boot banner is there to see
            assert "m-init-done" in ee.boot_lines and "m-timestamp-mode-performance" in ee.boot_lines
        assert ee.profile() == {"profile": "ULPMark for tinyML Firmware V0.0.1", "model": "fake"}
        rng = np.random.default_rng(1)
        for _ in range(2):
            x = rng.integers(-128, 128, 100).astype(np.int8)
            rec.sent = b""
            assert ee.load(x.tobytes()) == 100
            cmds = rec.sent.split(b"%")[:-1]
            assert cmds[0] == b"db load 100"
            assert [len(c) for c in cmds[1:]] == [3 + 2 * DB_CHUNK] * 3 + [3 + 2 * 7]
            assert ee.buffer() == x.tobytes()
            r = ee.infer(3, 1)
            want = _expected(x)
            assert r["int8"] == want.tobytes()
            assert r["results"] == [0.5 * (int(v) + 3) for v in want]
            assert r["us"] >= 0 and "m-warmup-start-1" in r["lines"]
            assert ee.results()["int8"] == want.tobytes()
        with pytest.raises(EembcError, match=r"e-\[Unknown command: bogus\]"):
            ee.command("bogus")
        with pytest.raises(EembcError, match="exceeds maximum of 100"):
            ee.command("db load 101")
        with pytest.raises(EembcError, match="Invalid hex digit"):
            ee.command("db load 2")
            ee.command("db zz11")


@pytest.mark.parametrize("board", BOARDS)
def test_eembc_digits_model_matches_tflite_micro(board):
    """The real model built with --protocol eembc: results bytes equal tflite-micro's."""
    try:
        from toolchain.hil.session import _model_client_class
        _model_client_class()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"model builds not available yet: {e}")
    from toolchain.hil.reference import HostReference
    from toolchain.hil.session import build_for_model, load_int8_model
    model, data = digits_model()
    m = load_int8_model(model)
    ref = HostReference(m.graph, m.tflite)
    q = m.in_tensor.quant
    x = np.load(data)["x"][:3].transpose(0, 2, 3, 1)
    xq = np.clip(np.round(x / q.scale[0]) + q.zero_point[0], -128, 127).astype(np.int8)
    fw = build_for_model(m, board, protocol="eembc")
    with start_device(board, fw) as dev:
        ee = EembcClient(dev.link().ser, url=dev.url)
        ee.sync()
        assert ee.profile()["model"].endswith(m.hash[:8])
        for s in xq:
            ee.load(s.tobytes())
            r = ee.infer(2, 1)
            want = ref(s)
            assert r["int8"] == want.tobytes()
            o = m.graph.t(m.graph.outputs[0]).quant
            assert r["results"] == pytest.approx(
                [o.scale[0] * (int(v) - o.zero_point[0]) for v in want], abs=6e-4)

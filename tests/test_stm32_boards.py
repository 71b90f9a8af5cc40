"""The stm32f4 board family: netduinoplus2 (STM32F405 emulated by QEMU, the family's
startup/USART/SysTick drivers exercised end to end) and nucleo-f446re (a real board:
built here, not run). Protocol round trips, the SysTick -> instructions factor on a
timed loop, a model bit-exact with tflite-micro, and the patch area size refusal."""
from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from toolchain.boards import load_board
from toolchain.build import build_firmware
from toolchain.errors import BoardError, BuildError

HAVE_GCC = shutil.which("arm-none-eabi-gcc") is not None
HAVE_QEMU = shutil.which("qemu-system-arm") is not None
needs_gcc = pytest.mark.skipif(not HAVE_GCC, reason="arm-none-eabi-gcc not installed "
                               "(apt-get install --no-install-recommends gcc-arm-none-eabi)")
needs_qemu = pytest.mark.skipif(not (HAVE_GCC and HAVE_QEMU), reason="qemu-system-arm or "
                                "arm-none-eabi-gcc not installed (apt-get install "
                                "--no-install-recommends qemu-system-arm gcc-arm-none-eabi)")
pytestmark = [pytest.mark.qemu]
KWS = Path("/work/shared/models/mlperf-tiny/kws_ref_model.tflite")

# A handler timing a loop of known length: 2 instructions per iteration (subs, bne).
LOOP = r"""
#include "mcu_proto.h"
#include "board.h"
static uint8_t on_loop(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint32_t n = mcu_get_u32(req->data);
    uint64_t t0 = board_ticks(), t1;
    __asm volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n)::"cc");
    t1 = board_ticks();
    mcu_put_u32(rep->data, (uint32_t)(t1 - t0));
    rep->len = 4;
    return MCU_ST_OK;
}
MCU_HANDLER(0x3E, on_loop);
"""


def test_board_files():
    nd, nu = load_board("netduinoplus2"), load_board("nucleo-f446re")
    assert nd.family == nu.family == "stm32f4"
    assert (nd.kind, nu.kind) == ("qemu", "serial")
    assert nd.flash_origin == nu.flash_origin == 0x08000000
    assert (nd.flash_size, nd.ram_size) == (1 << 20, 128 << 10)
    assert (nu.flash_size, nu.ram_size) == (512 << 10, 128 << 10)
    assert nd.defines["STM32_USART"] == 1 and nu.defines["STM32_USART"] == 2
    assert (nu.defines["STM32_UART_TX_PIN"], nu.defines["STM32_UART_RX_PIN"]) == (2, 3)
    assert nu.cpu_hz == nu.tick_hz == 16_000_000 and nu.raw["timing"]["counter"] == "dwt"
    assert "{hex}" in nu.flash_command


@pytest.fixture(scope="module")
def nd_fw(tmp_path_factory):
    if not HAVE_GCC:
        pytest.skip("arm-none-eabi-gcc not installed")
    d = tmp_path_factory.mktemp("nd")
    (d / "loop.c").write_text(LOOP)
    return build_firmware("netduinoplus2", d / "b", extra_sources=[d / "loop.c"],
                          test_build=True, werror=True)


@needs_gcc
def test_nucleo_builds_clean(tmp_path):
    fw = build_firmware("nucleo-f446re", tmp_path / "nu", werror=True)
    assert fw.flash_budget == 512 << 10 and 1000 < fw.flash_used < 16 << 10
    assert fw.bin.exists() and (tmp_path / "nu" / "firmware.hex").exists()
    log = (tmp_path / "nu" / "build.log").read_text()
    assert "-DSTM32_USART=2" in log and "-DMCU_TIMER_DWT=1" in log
    # vector table at the flash origin: initial SP in SRAM, reset handler in flash (thumb)
    sp, reset = struct.unpack_from("<II", fw.bin.read_bytes())
    assert 0x20000000 < sp <= 0x20000000 + (128 << 10)
    assert 0x08000000 <= reset < 0x08000000 + fw.flash_used and reset & 1


def test_nucleo_needs_a_port():
    from toolchain.devices import start_device
    with pytest.raises(BoardError, match="real board: give its serial port"):
        start_device("nucleo-f446re")


@needs_qemu
def test_netduinoplus2_link_and_timing(nd_fw):
    import os
    from toolchain.devices import start_device
    with start_device("netduinoplus2", nd_fw) as d:
        lk = d.link(timeout=2.0, retries=3)
        info = lk.info()
        assert info.board == "netduinoplus2" and info.build_id == nd_fw.build_id
        assert info.test_build and (info.tick_hz, info.instructions_per_tick) == (10**9, 1)
        # the device counts the span from the vector table to the end of .data's load
        # image, the build report the section sizes: they differ by alignment padding
        assert 0 <= info.flash_used - nd_fw.flash_used < 8 and info.ram_used == nd_fw.ram_used
        for n in (0, 1, 255, 1024):
            data = os.urandom(n)
            assert lk.echo(data) == data
        data = os.urandom(3000)  # more than the 256-byte RX ring: flow control holds
        from toolchain.link import Msg
        lk.send_chunked(Msg.DEBUG_SCRATCH, data)
        assert lk.recv_chunked(Msg.DEBUG_SCRATCH) == data
        # 168 MHz SysTick converted to ns = instructions under -icount shift=0:
        # 2n instructions read as 2n ticks, plus the two board_ticks() calls.
        for n in (1000, 1_000_000):
            t = struct.unpack("<I", lk.request(0x3E, struct.pack("<I", n)))[0]
            assert 2 * n <= t <= 2 * n + 300, (n, t)
        lk.exit(5)
        assert d.wait_exit(5) == 5
    assert "mcu firmware ready: netduinoplus2" in d.log()


@needs_qemu
def test_kws_on_netduinoplus2_bit_exact(tmp_path):
    if not KWS.exists():
        pytest.skip(f"{KWS} not present")
    from click.testing import CliRunner

    from converters import load_model
    from toolchain.build import load_build
    from toolchain.cli import main
    from toolchain.devices import start_device
    from toolchain.tflm_oracle import TflmRunner
    from toolchain.link.model import ModelClient
    out = tmp_path / "kws"
    r = CliRunner().invoke(main, ["build", str(KWS), "--board", "netduinoplus2", "-o", str(out),
                                  "--werror", "--no-tflm"])
    assert r.exit_code == 0, r.output
    g = load_model(KWS)
    tf = TflmRunner(KWS.read_bytes())
    xs = np.random.default_rng(5).integers(-128, 128, size=(4,) + tuple(g.t(g.inputs[0]).shape))
    with start_device("netduinoplus2", load_build(out)) as dev:
        client = ModelClient(dev.link())
        info = client.info()
        assert info.model_hash == g.model_hash() and info.count_unit == "instructions"
        counts = []
        for i, x in enumerate(xs.astype(np.int8)):
            y, count = client.infer(x.tobytes())
            assert np.frombuffer(y, np.int8).tolist() == tf.run(x)[0].reshape(-1).tolist(), \
                f"KWS on netduinoplus2: input {i} differs from tflite-micro"
            counts.append(count)
    # same DSP kernels as mps2-an386 (about 5.3 M instructions per inference)
    assert 4_000_000 < min(counts) <= max(counts) < 7_000_000, counts


def test_patch_build_too_big_for_f446re_is_refused(tmp_path):
    """Patchable builds are allowed on the family (STM32F4 flash backend, issue #13:
    tests/test_stm32_flash.py); the weight area needs six 128 KB sectors, which the
    512 KB F446RE does not have: one line, before anything is compiled."""
    from toolchain.patch.device import build_patch_firmware, raw_store
    with pytest.raises(BuildError) as e:
        build_patch_firmware("nucleo-f446re", raw_store(), b"k" * 32, tmp_path / "p")
    assert "does not fit board nucleo-f446re's 524,288 B flash" in str(e.value)
    assert "\n" not in str(e.value)

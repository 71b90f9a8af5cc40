"""Real boards of issue #13 built and checked from the ELF and map (no hardware here):
NUCLEO-L4R5ZI (stm32l4 family: the MLPerf Tiny reference device) and nRF52840-DK
(nrf52 family: a second vendor). Each builds warning-free (-Werror); the vector table
(initial SP at the top of SRAM, reset handler in flash, the link's IRQ vectors), the
clock and pin configuration (the firmware's mcu_board_facts table), the symbols and
every section's placement inside the board's memory are read back from the build;
the L4 also builds the KWS model in EEMBC mode (what the MLPerf Tiny runner drives)."""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from toolchain.boards import load_board
from toolchain.build import build_firmware

HAVE_GCC = shutil.which("arm-none-eabi-gcc") is not None
needs_gcc = pytest.mark.skipif(not HAVE_GCC, reason="arm-none-eabi-gcc not installed "
                               "(apt-get install --no-install-recommends gcc-arm-none-eabi)")
KWS = Path("/work/shared/models/mlperf-tiny/kws_ref_model.tflite")


def _symbols(elf: Path) -> dict:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    return {ln.split()[2]: int(ln.split()[0], 16) for ln in out.splitlines()
            if len(ln.split()) == 3}


def _words(fw, addr: int, n: int) -> list[int]:
    """n little-endian words of the flash image at address addr."""
    b = load_board(fw.board)
    data = fw.bin.read_bytes()
    o = addr - b.flash_origin
    return list(struct.unpack_from(f"<{n}I", data, o))


def _check_layout(fw, b):
    for s in fw.sections:      # every allocated section inside the board's flash or RAM
        in_flash = b.flash_origin <= s["addr"] and s["addr"] + s["size"] <= b.flash_origin + b.flash_size
        in_ram = b.ram_origin <= s["addr"] and s["addr"] + s["size"] <= b.ram_origin + b.ram_size
        assert in_flash or in_ram, s
    assert fw.flash_used <= b.flash_size and fw.ram_used <= b.ram_size
    text = fw.map.read_text()
    assert "Linker script and memory map" in text and ".isr_vector" in text


def test_board_files():
    l4, nrf = load_board("nucleo-l4r5zi"), load_board("nrf52840-dk")
    assert (l4.family, l4.kind, nrf.family, nrf.kind) == ("stm32l4", "serial", "nrf52", "serial")
    assert (l4.flash_origin, l4.flash_size, l4.ram_size) == (0x08000000, 2 << 20, 640 << 10)
    assert (nrf.flash_origin, nrf.flash_size, nrf.ram_size) == (0, 1 << 20, 256 << 10)
    assert l4.cpu_hz == l4.tick_hz == 120_000_000 and l4.raw["timing"]["counter"] == "dwt"
    assert (nrf.cpu_hz, nrf.tick_hz) == (64_000_000, 16_000_000)
    assert l4.flash_command[:4] == ["pyocd", "flash", "-t", "stm32l4r5zitx"]
    assert nrf.flash_command[:4] == ["pyocd", "flash", "-t", "nrf52840"]
    assert l4.defines["STM32_UART_PORT"] == 6 and (l4.defines["STM32_UART_TX_PIN"],
                                                   l4.defines["STM32_UART_RX_PIN"]) == (7, 8)
    assert (nrf.defines["NRF_UART_TX_PIN"], nrf.defines["NRF_UART_RX_PIN"]) == (6, 8)


@needs_gcc
def test_nucleo_l4r5zi_builds_and_checks_out(tmp_path):
    b = load_board("nucleo-l4r5zi")
    fw = build_firmware(b, tmp_path / "l4", werror=True)
    assert fw.bin.exists() and (tmp_path / "l4" / "firmware.hex").exists()
    _check_layout(fw, b)
    sym = _symbols(fw.elf)
    for s in ("Reset_Handler", "board_clock_init", "LPUART1_IRQHandler", "NMI_Handler",
              "SysTick_Handler", "stm32_vectors", "mcu_board_facts"):
        assert s in sym, s
    assert sym["stm32_vectors"] == 0x08000000
    sp, reset, nmi = _words(fw, 0x08000000, 3)
    assert sp == 0x20000000 + (640 << 10)                # top of the 640 KB SRAM
    assert reset == sym["Reset_Handler"] | 1 and nmi == sym["NMI_Handler"] | 1
    assert _words(fw, 0x08000000 + 4 * 15, 1)[0] == sym["SysTick_Handler"] | 1
    assert _words(fw, 0x08000000 + 4 * (16 + 70), 1)[0] == sym["LPUART1_IRQHandler"] | 1
    sysclk, pllcfgr, latency, brr, port, tx, rx, af = _words(fw, sym["mcu_board_facts"], 8)
    # MSI 4 MHz / M 1 * N 60 / R 2 = 120 MHz; PLLSRC = MSI, PLLREN; 5 wait states
    assert sysclk == 120_000_000 == b.cpu_hz
    assert pllcfgr & 3 == 1 and (pllcfgr >> 4) & 0xF == 0 and (pllcfgr >> 8) & 0x7F == 60
    assert (pllcfgr >> 25) & 3 == 0 and pllcfgr & (1 << 24)
    assert latency == 5
    assert brr == round(256 * 120e6 / 115200) and 0x300 <= brr < 1 << 20  # LPUART BRR range
    assert (port, tx, rx, af) == (6, 7, 8, 8)           # PG7 / PG8, AF8
    log = (tmp_path / "l4" / "build.log").read_text()
    assert "-DMCU_TIMER_DWT=1" in log and "-DSTM32_VDDIO2=1" in log
    # the stack reserve ends at the top of SRAM
    st = next(s for s in fw.sections if s["name"] == ".stack")
    assert st["addr"] + st["size"] == 0x20000000 + (640 << 10)


@needs_gcc
def test_nrf52840_dk_builds_and_checks_out(tmp_path):
    b = load_board("nrf52840-dk")
    fw = build_firmware(b, tmp_path / "nrf", werror=True)
    _check_layout(fw, b)
    sym = _symbols(fw.elf)
    for s in ("Reset_Handler", "UARTE0_IRQHandler", "TIMER1_IRQHandler", "nrf_vectors",
              "mcu_board_facts", "board_ticks"):
        assert s in sym, s
    assert sym["nrf_vectors"] == 0
    sp, reset = _words(fw, 0, 2)
    assert sp == 0x20000000 + (256 << 10) and reset == sym["Reset_Handler"] | 1
    assert _words(fw, 4 * (16 + 2), 1)[0] == sym["UARTE0_IRQHandler"] | 1
    assert _words(fw, 4 * (16 + 9), 1)[0] == sym["TIMER1_IRQHandler"] | 1
    cpu, timer, baud, tx, rx = _words(fw, sym["mcu_board_facts"], 5)
    assert (cpu, timer, baud, tx, rx) == (64_000_000, 16_000_000, 0x01D7E000, 6, 8)


@needs_gcc
def test_l4r5zi_eembc_build_of_kws(tmp_path):
    """The MLPerf Tiny KWS model in EEMBC mode for the reference board: what the
    benchmark runner drives over the VCP (name%, db, infer, results%)."""
    if not KWS.exists():
        pytest.skip(f"{KWS} not present")
    from click.testing import CliRunner

    from toolchain.build import load_build
    from toolchain.cli import main
    out = tmp_path / "kws"
    r = CliRunner().invoke(main, ["build", str(KWS), "--board", "nucleo-l4r5zi", "--protocol",
                                  "eembc", "-o", str(out), "--werror", "--no-tflm"])
    assert r.exit_code == 0, r.output
    fw = load_build(out)
    _check_layout(fw, load_board("nucleo-l4r5zi"))
    sym = _symbols(fw.elf)
    assert "mcu_eembc_main" in sym and "model_invoke" in sym
    img = fw.bin.read_bytes()
    assert b"m-ready" in img and b"m-results-" in img and b"ULPMark for tinyML" in img

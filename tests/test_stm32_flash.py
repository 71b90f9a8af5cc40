"""Patches on real STM32 flash (issue #13): the F4 and L4 flash-controller backends
(firmware_templates/patch/stm32/) against register-level models of the controllers in
a host build. The models' rules (lock and key sequence, PG/PSIZE/alignment/sequence
errors, double words programmed once, ECC, write-protected code) driven from C; the
patch engine end to end on the model boards host-stm32f4 / host-stm32l4; a power-cut
smoke (the full campaign: `make patch-faults-stm32`); and the cross builds: patchable
firmware is no longer refused on stm32f4/stm32l4 and its weight area lands where
docs/patch-device.md says."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from toolchain.errors import BuildError
from toolchain.patch.device import (build_patch_firmware, flash_backend, mutate_store,
                                    patch_between, raw_store)
from toolchain.patch.send import patch_status, send_patch

ROOT = Path(__file__).resolve().parent.parent
T = ROOT / "firmware_templates"
KEY = bytes(range(32))
CC = shutil.which("cc") or shutil.which("gcc")
HAVE_GCC = shutil.which("arm-none-eabi-gcc") is not None
needs_cc = pytest.mark.skipif(CC is None, reason="no host C compiler")
CTRL = {"f4": ("F4", 0x20000, 1), "l4": ("L4", 0x1000, 8)}


@pytest.fixture(scope="module")
def store():
    return raw_store()


@needs_cc
@pytest.mark.parametrize("fam", ["f4", "l4"])
def test_controller_model_rules_and_torn_operations(fam, tmp_path):
    name, page, wu = CTRL[fam]
    exe = tmp_path / f"m{fam}"
    cmd = [CC, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-DMCU_FLASH_MODEL",
           "-DMCU_TEST_BUILD", f"-DTEST_{name}", f"-DMCU_FLASH_PAGE={page}",
           f"-DMCU_FLASH_WRITE_UNIT={wu}", f"-I{T}/patch", f"-I{T}/patch/stm32", f"-I{T}/app",
           str(ROOT / "tests/c/stm32_flash_main.c"), str(T / f"patch/stm32/flash_stm32{fam}.c"),
           str(T / "patch/stm32/model_common.c"), str(T / f"patch/stm32/model_stm32{fam}.c"),
           str(T / "boards/host/flash_host.c"), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True)
    f = tmp_path / "flash.bin"

    def run(mode):
        return subprocess.run([str(exe), str(f), mode], capture_output=True, text=True)
    r = run("rules")
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stdout + r.stderr
    for what in ("program", "erase"):            # the power cut tears the operation ...
        r = run(f"torn-{what}")
        assert r.returncode == 99, r.stdout + r.stderr
        r = run(f"check-{what}")                  # ... and the next boot sees exactly that
        assert r.returncode == 0 and r.stdout.strip() == "OK", (what, r.stdout + r.stderr)


def test_backend_selection():
    assert flash_backend("host")["flash"] == "nor"
    f4, l4 = flash_backend("netduinoplus2"), flash_backend("nucleo-l4r5zi")
    assert (f4["flash"], f4["page"], f4["write_unit"], f4["model"]) == ("stm32f4", 0x20000, 1, False)
    assert (l4["flash"], l4["page"], l4["write_unit"], l4["model"]) == ("stm32l4", 4096, 8, False)
    m = flash_backend("host-stm32l4")
    assert m["model"] and m["defines"] == {"MCU_FLASH_WRITE_UNIT": 8, "MCU_FLASH_MODEL": 1}
    assert any(p.name == "model_stm32l4.c" for p in m["sources"])


@pytest.mark.parametrize("board", ["host-stm32f4", "host-stm32l4"])
def test_patches_on_the_controller_model(board, store, tmp_path):
    from toolchain.devices import start_device
    from toolchain.patch.faults import power_cut_campaign
    fw = build_patch_firmware(board, store, KEY, tmp_path / "fw", test_build=True, werror=True)
    new = mutate_store(store, 0.05, seed=1)
    new2 = mutate_store(new, 0.3, seed=2)
    with start_device(board, fw) as dev:
        lk = dev.link()
        s = patch_status(lk)
        assert s.valid and s.hash == store.hexhash()
        r = send_patch(None, patch_between(store, new, KEY, 1), link=lk)
        assert r.applied and r.hash == new.hexhash()
        r = send_patch(None, patch_between(new, new2, KEY, 2, full=True), link=lk, chunk=100)
        assert r.applied and r.hash == new2.hexhash()  # odd chunk sizes: tails held in RAM
        s = patch_status(lk)
        assert s.refused == 0 and s.page == flash_backend(board)["page"]
    rep = power_cut_campaign(board, fw, store, new, KEY, tmp_path / "pc", stride=3,
                             torn_every=2)
    print(f"{board} power cuts: {rep['trials']} trials ({rep['torn']} torn) over {rep['ops']} "
          f"flash ops: {rep['old']} old / {rep['new']} new after reboot")
    assert rep["bad"] == 0 and rep["trials"] >= rep["ops"] // 3, rep["failures"][:3]


def test_model_patch_on_l4_model_bit_exact(tmp_path):
    from toolchain.devices import start_device
    from toolchain.patch.campaign import model_case
    from toolchain.patch.check import check_outputs
    from toolchain.patch.device import build_patch_model_firmware
    from toolchain.patch.store import store_hash
    g0, res = model_case(frac=0.1)
    fw, _ = build_patch_model_firmware(g0, "host-stm32l4", KEY, tmp_path / "fw", werror=True)
    with start_device("host-stm32l4", fw) as dev:
        lk = dev.link()
        assert check_outputs(lk, g0)[0]
        r = send_patch(None, res.data, link=lk)
        assert r.hash == store_hash(res.graph)
        ok, _, msg = check_outputs(lk, res.graph)
        assert ok, msg


@pytest.mark.skipif(not HAVE_GCC, reason="arm-none-eabi-gcc not installed")
def test_patchable_cross_builds_and_layout(store, tmp_path):
    from toolchain.build import elf_sections
    nd = build_patch_firmware("netduinoplus2", store, KEY, tmp_path / "nd", test_build=False,
                              werror=True)
    l4 = build_patch_firmware("nucleo-l4r5zi", store, KEY, tmp_path / "l4", test_build=False,
                              werror=True)
    wf = {fw.board: next(s for s in elf_sections(fw.elf) if s["name"] == ".mcu_wflash")
          for fw in (nd, l4)}
    # F4: six 128 KB sectors from sector 5; L4: bank 2, 4 KB pages
    assert wf["netduinoplus2"]["addr"] == 0x08020000 and wf["netduinoplus2"]["size"] == 6 * 0x20000
    assert wf["nucleo-l4r5zi"]["addr"] == 0x08100000 and wf["nucleo-l4r5zi"]["size"] % 4096 == 0
    for b, msg in (("nucleo-f446re", "does not fit board nucleo-f446re"),
                   ("nrf52840-dk", "patch flash backend not available for family nrf52")):
        with pytest.raises(BuildError) as e:
            build_patch_firmware(b, store, KEY, tmp_path / b)
        assert msg in str(e.value) and "\n" not in str(e.value)

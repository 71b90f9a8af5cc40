"""Device half of partial weight patches (issue #6): C SHA-256/HMAC and NOR flash
emulation against Python, streaming + apply + rejections on the host board, resume
after a dropped link and after a reboot, power cuts at every flash operation (a
smoke subset; the full campaign is scripts/patch_faults.py), and a QEMU smoke run.
"""
from __future__ import annotations

import hashlib
import hmac
import random
import shutil
import struct
import subprocess
import zlib

import pytest

from toolchain.link.protocol import Msg, Status
from toolchain.patch.device import (build_patch_firmware, mutate_store, patch_between,
                                    raw_store)
from toolchain.patch.errors import (PatchAuthError, PatchBaseError, PatchFormatError,
                                    PatchReplayError, PatchTruncated)
from toolchain.patch.send import patch_status, send_patch

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = bytes(range(32))
CC = shutil.which("cc") or shutil.which("gcc")


def _cc(tmp_path, name, sources):
    exe = tmp_path / name
    cmd = [CC, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror",
           f"-I{ROOT}/firmware_templates/patch", f"-I{ROOT}/firmware_templates/app",
           *map(str, sources), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True)
    return exe


@pytest.mark.skipif(CC is None, reason="no host C compiler")
def test_sha256_hmac_match_python(tmp_path):
    exe = _cc(tmp_path, "sha", [ROOT / "tests/c/sha_main.c",
                                ROOT / "firmware_templates/patch/sha256.c"])
    r = random.Random(7)
    lines, want = [], []
    sizes = list(range(0, 130)) + [447, 448, 1000, 4095, 4096, 65537]
    for n in sizes:
        for kl in ((0, 32, 64, 65, 200) if n < 2 else (r.choice([1, 32, 64, 100]),)):
            m = r.randbytes(n)
            k = r.randbytes(kl)
            lines.append(f"{k.hex() or '-'} {m.hex() or '-'}")
            want.append(f"{hashlib.sha256(m).hexdigest()} "
                        f"{hmac.new(k, m, hashlib.sha256).hexdigest()}")
    out = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == want
    print(f"SHA-256/HMAC vectors: {len(want)} match hashlib/hmac")


@pytest.mark.skipif(CC is None, reason="no host C compiler")
def test_flash_nor_semantics(tmp_path):
    exe = _cc(tmp_path, "flash", [ROOT / "tests/c/flash_main.c",
                                  ROOT / "firmware_templates/patch/flash_nor.c",
                                  ROOT / "firmware_templates/boards/host/flash_host.c"])
    r = subprocess.run([str(exe), str(tmp_path / "f.bin")], capture_output=True, text=True)
    assert r.stdout.strip() == "OK", r.stdout + r.stderr


# ---- host board ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def store():
    return raw_store()


@pytest.fixture(scope="module")
def host_fw(tmp_path_factory, store):
    return build_patch_firmware("host", store, KEY, tmp_path_factory.mktemp("pfw-host"),
                                test_build=True, werror=True)


def _start(board, fw, flash=None):
    from toolchain.devices import start_device
    extra = []
    if flash is not None:
        extra = ["--flash", str(flash)] if board == "host" else ["-append", f"--flash {flash}"]
    return start_device(board, fw, extra_args=extra)


def test_send_apply_and_rejections_host(host_fw, store):
    new = mutate_store(store, 0.05, seed=1)
    new2 = mutate_store(new, 0.05, seed=2)
    with _start("host", host_fw) as dev:
        lk = dev.link()
        s = patch_status(lk)
        assert s.valid and s.seq == 0 and s.hash == store.hexhash()
        p1 = patch_between(store, new, KEY, 1)
        r = send_patch(None, p1, link=lk)
        assert r.applied and r.hash == new.hexhash() and r.seq == 1
        assert patch_status(lk).hash == new.hexhash()
        # the device's store bytes are exactly the new store's
        back = b""
        while len(back) < s.slot_size:
            back += lk.request(Msg.PATCH_READ, struct.pack("<IH", len(back), 1024))
        from toolchain.patch.device import area_layout, slot_image
        assert back == slot_image(new, area_layout(store))
        ops = patch_status(lk).flash_ops

        def rejected(data, exc, match):
            with pytest.raises(exc, match=match):
                send_patch(None, data, link=lk)
            st = patch_status(lk)
            assert st.hash == new.hexhash() and st.seq == 1      # nothing changed

        rejected(patch_between(store, new2, KEY, 2), PatchBaseError, "wrong base")
        rejected(patch_between(new, new2, KEY, 1), PatchReplayError, "not above the last")
        forged = bytearray(patch_between(new, new2, KEY, 2))
        forged[150] ^= 0x01
        rejected(bytes(forged), PatchAuthError, "tag mismatch")
        rejected(patch_between(new, new2, bytes(32), 2), PatchAuthError, "another key")
        with pytest.raises(PatchTruncated):
            send_patch(None, patch_between(new, new2, KEY, 2)[:-5], link=lk)
        # a truncated patch sent raw: the device refuses it as well
        good = patch_between(new, new2, KEY, 2)
        r = lk.transact(Msg.PATCH_BEGIN, struct.pack("<II", len(good) - 5, 0) + good[:128])
        assert r.status == Status.PATCH_INVALID and b"truncated" in r.payload
        # apply without a complete staged patch
        r = lk.transact(Msg.PATCH_APPLY)
        assert r.status in (Status.BAD_STATE, Status.AUTH_FAILED)
        assert patch_status(lk).hash == new.hexhash()
        # full patch through the same path
        pf = patch_between(new, new2, KEY, 5, full=True)
        r = send_patch(None, pf, link=lk)
        assert r.applied and r.hash == new2.hexhash() and r.seq == 5
        assert patch_status(lk).flash_ops > ops
        # DELTA without old values (roll-forward; base checked by its hash)
        new3 = mutate_store(new2, 0.05, seed=6)
        p6 = patch_between(new2, new3, KEY, 6, with_old=False)
        assert len(p6) < len(patch_between(new2, new3, KEY, 6))
        r = send_patch(None, p6, link=lk)
        assert r.hash == new3.hexhash() and patch_status(lk).seq == 6


def test_resume_after_link_drop_and_reboot(host_fw, store, tmp_path):
    from toolchain.link import Link
    new = mutate_store(store, 1.0, seed=3)              # all elements: a big delta
    p = patch_between(store, new, KEY, 1)
    flash = tmp_path / "flash.bin"
    with _start("host", host_fw, flash) as dev:
        url = dev.url
        dev.release()

        def cut(off, total):                              # drop the link a third of the way
            if off > len(p) // 3:
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            send_patch(lambda: Link.open(url), p, progress=cut, window=2)
        st = patch_status(Link.open(url))
        assert st.staging and 0 < st.staged_next < len(p)
        # reboot on the same flash file: the staging header remembers the offset
        dev.stop()
    with _start("host", host_fw, flash) as dev:
        st = patch_status(dev.link())
        assert st.staging and st.staged_next > 0 and st.flash_loaded
        r = send_patch(None, p, link=dev.link())
        assert r.resumed_from == st.staged_next and r.applied and r.hash == new.hexhash()
    with _start("host", host_fw, flash) as dev:          # committed state survives reboot
        st = patch_status(dev.link())
        assert st.hash == new.hexhash() and st.seq == 1 and not st.staging


def test_power_cut_every_flash_op_host_smoke(host_fw, store, tmp_path):
    from toolchain.patch.faults import power_cut_campaign
    new = mutate_store(store, 0.02, seed=4)
    rep = power_cut_campaign("host", host_fw, store, new, KEY, tmp_path, stride=3,
                             torn_every=2)
    print(f"host power cuts: {rep['trials']} trials over {rep['ops']} flash ops: "
          f"{rep['old']} old, {rep['new']} new after reboot; all resumed to new")
    assert rep["trials"] >= rep["ops"] // 3 and rep["bad"] == 0


# ---- with a generated model ------------------------------------------------------------
def _model_case(frac=0.1):
    from toolchain.patch.campaign import model_case
    return model_case(frac=frac)


def _verifier(graphs):
    from toolchain.patch.campaign import verifier
    return verifier(graphs)


@pytest.mark.parametrize("board", ["host", "mps2-an386"])
def test_model_patch_outputs_bit_exact(board, tmp_path):
    if board != "host" and not shutil.which("qemu-system-arm"):
        pytest.skip("qemu-system-arm not installed")
    from toolchain.patch.check import check_outputs
    from toolchain.patch.device import build_patch_model_firmware
    from toolchain.patch.store import store_hash
    g0, res = _model_case()
    fw, _ = build_patch_model_firmware(g0, board, KEY, tmp_path / "fw", werror=True)
    with _start(board, fw) as dev:
        lk = dev.link()
        assert check_outputs(lk, g0)[0]
        r = send_patch(None, res.data, link=lk)
        assert r.hash == store_hash(res.graph)
        ok, n, msg = check_outputs(lk, res.graph)
        assert ok, msg
        print(f"{board}: {msg}")


def test_power_cuts_with_model_host(tmp_path):
    from toolchain.patch.device import build_patch_model_firmware
    from toolchain.patch.faults import power_cut_campaign
    from toolchain.patch.store import weight_store
    g0, res = _model_case(frac=0.05)
    fw, _ = build_patch_model_firmware(g0, "host", KEY, tmp_path / "fw", werror=True)
    rep = power_cut_campaign("host", fw, weight_store(g0), weight_store(res.graph), KEY,
                             tmp_path / "pc", data=res.data, stride=1, torn_every=3,
                             verify=_verifier([g0, res.graph]))
    print(f"host+model power cuts: {rep['trials']} trials ({rep['torn']} torn) over "
          f"{rep['ops']} flash ops: {rep['old']} old / {rep['new']} new model after reboot, "
          f"outputs bit-exact, all resumed to the new model")
    assert rep["bad"] == 0, rep["failures"][:3]


def test_power_cuts_qemu_smoke(tmp_path):
    if not shutil.which("qemu-system-arm"):
        pytest.skip("qemu-system-arm not installed")
    from toolchain.patch.device import build_patch_model_firmware
    from toolchain.patch.faults import power_cut_campaign
    from toolchain.patch.store import weight_store
    g0, res = _model_case(frac=0.05)
    fw, _ = build_patch_model_firmware(g0, "mps2-an386", KEY, tmp_path / "fw", werror=True)
    rep = power_cut_campaign("mps2-an386", fw, weight_store(g0), weight_store(res.graph), KEY,
                             tmp_path / "pc", data=res.data, stride=5, torn_every=2,
                             verify=_verifier([g0, res.graph]))
    print(f"QEMU power cuts: {rep['trials']} trials ({rep['torn']} torn) over {rep['ops']} "
          f"flash ops: {rep['old']} old / {rep['new']} new after reboot")
    assert rep["bad"] == 0, rep["failures"][:3]


def test_link_faults_proxy_smoke(host_fw, store):
    from toolchain.patch.faults import link_fault_campaign
    new = mutate_store(store, 0.3, seed=9)
    rep = link_fault_campaign("host", host_fw, store, new, KEY, trials=4, seed=1,
                              drop=5e-4, dup=5e-4, corrupt=5e-4, delay=2e-3)
    p = rep["proxy"]
    print(f"link faults: {rep['trials']} sends, {rep['ok']} ok; proxy dropped {p['dropped']}, "
          f"duplicated {p['duplicated']}, corrupted {p['corrupted']}, delayed {p['delayed']} "
          f"bytes; {rep['retransmits']} go-backs, {rep['reconnects']} reconnects")
    assert rep["bad"] == 0 and rep["final_hash_ok"], rep["failures"]


def test_link_cut_resumes(host_fw, store):
    from toolchain.patch.faults import link_fault_campaign
    new = mutate_store(store, 1.0, seed=10)
    rep = link_fault_campaign("host", host_fw, store, new, KEY, trials=2, seed=2, drop=0,
                              dup=0, corrupt=0, delay=0, cut_after=3000)
    assert rep["bad"] == 0 and rep["reconnects"] > 0 and rep["proxy"]["cuts"] > 0, rep


def test_cli_resend_of_an_applied_patch_is_a_success(host_fw, store, tmp_path):
    """`mcu patch send` twice (a fleet script retrying after a lost acknowledgement):
    the second is exit 0, "already applied, nothing sent"; the device is unchanged."""
    from click.testing import CliRunner

    from toolchain.cli import main
    new = mutate_store(store, 0.05, seed=11)
    p = tmp_path / "p1.mcup"
    p.write_bytes(patch_between(store, new, KEY, 1))
    with _start("host", host_fw) as dev:
        url = dev.url
        dev.release()
        r = CliRunner().invoke(main, ["patch", "send", str(p), "--port", url])
        assert r.exit_code == 0 and "applied: device model" in r.output, r.output
        r = CliRunner().invoke(main, ["patch", "send", str(p), "--port", url])
        assert r.exit_code == 0 and "already applied, nothing sent" in r.output, r.output
        st = patch_status(dev.link())
        assert st.hash == new.hexhash() and st.seq == 1

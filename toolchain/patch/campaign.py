"""The long fault campaign of the device apply (issue #6): `make patch-faults` or
`python -m toolchain.patch.campaign --json build/patch-faults.json [--quick] [--no-qemu]`;
`make patch-faults-stm32` (`--stm32`) runs it over the STM32 flash controller models
instead (boards host-stm32f4 and host-stm32l4, issue #13): build/patch-faults-stm32.json.

- power cuts at every flash operation (stride 1; every 2nd cut torn) of streaming and
  applying: a raw store (small delta, all-elements delta, full patch) and a generated
  model (outputs checked against the reference interpreter after every reboot), on
  the host board and on QEMU mps2-an386 (semihosting-backed flash file);
- link faults through a TCP proxy (dropped, duplicated, corrupted, delayed bytes) and
  link cuts mid-transfer;
- rejections: forged, other-key, truncated, replayed and wrong-base patches are
  refused with the right status and change nothing.
Prints trial counts; writes JSON."""
from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

KEY = bytes(range(32))


def model_case(frac=0.05, seed=3):
    """The toy int8 model and a patch changing about `frac` of its weights and biases
    (seeded): the generated-model case of the campaign and of tests/test_patch_device.py."""
    import numpy as np

    from .make import build_patch
    from .store import weight_store
    from .toy import toy_int8_graph
    g0 = toy_int8_graph(0)
    st = weight_store(g0)
    rng = np.random.default_rng(seed)
    new_q = {}
    for i, t in enumerate(st.tensors):
        if t.patchable:
            d = t.data.astype(np.int64).copy()
            m = rng.random(d.size) < frac
            d[m] = (rng.integers(-127, 128, m.sum()) if t.dtype == "int8"
                    else rng.integers(-2000, 2000, m.sum()))
            new_q[i] = d
    return g0, build_patch(g0, new_q, KEY, 1)


def verifier(graphs):
    """verify(link, hash) for power-cut campaigns: outputs on fixed inputs == reference
    of the model with that hash."""
    from .check import check_outputs, fixed_inputs, reference_outputs
    from .store import store_hash
    refs = {store_hash(g): (g, reference_outputs(g, fixed_inputs(g, 4))) for g in graphs}
    return lambda link, h: check_outputs(link, refs[h][0], 4, ref=refs[h][1])[0]


def rejections(board, fw, old, key=KEY) -> dict:
    """Each bad patch is refused with the expected status and leaves the store as it was."""
    from toolchain.devices import start_device
    from toolchain.link.protocol import Msg, Status

    from .device import mutate_store, patch_between
    from .send import PatchDeviceError, patch_status, send_patch
    new = mutate_store(old, 0.05, seed=11)
    new2 = mutate_store(new, 0.05, seed=12)
    out = dict(board=board, trials=0, ok=0, failures=[])
    with start_device(board, fw) as dev:
        lk = dev.link()
        send_patch(None, patch_between(old, new, key, 1), link=lk)
        ref = patch_status(lk)
        forged = bytearray(patch_between(new, new2, key, 2))
        forged[140] ^= 0x10
        good = patch_between(new, new2, key, 2)
        cases = [("forged", bytes(forged), Status.AUTH_FAILED),
                 ("other key", patch_between(new, new2, bytes(32), 2), Status.AUTH_FAILED),
                 ("replayed", patch_between(old, new, key, 1), Status.REPLAY),
                 ("stale seq", patch_between(new, new2, key, 1), Status.REPLAY),
                 ("wrong base", patch_between(old, new2, key, 3), Status.WRONG_BASE),
                 ("truncated", good[:-7], Status.PATCH_INVALID)]
        for name, data, want in cases:
            out["trials"] += 1
            try:
                if name in ("truncated", "replayed"):
                    # the host refuses a truncated patch itself and reports a replay of the
                    # applied patch as "already applied": send them raw to the device
                    r = lk.transact(Msg.PATCH_BEGIN, struct.pack("<II", len(data), 0) + data[:128])
                    got = r.status
                else:
                    send_patch(None, data, link=lk)
                    got = Status.OK
            except PatchDeviceError as e:
                got = e.status
            st = patch_status(lk)
            if got == want and st.hash == ref.hash and st.seq == ref.seq:
                out["ok"] += 1
            else:
                out["failures"].append(f"{name}: status {got} (want {int(want)}), hash "
                                       f"{'same' if st.hash == ref.hash else 'CHANGED'}")
    return out


STM32_BOARDS = ("host-stm32f4", "host-stm32l4")


def run(json_path=None, quick=False, qemu=True, echo=print, boards=None) -> dict:
    from .device import (build_patch_firmware, build_patch_model_firmware, mutate_store,
                         patch_between, raw_store)
    from .faults import link_fault_campaign, power_cut_campaign
    from .store import weight_store
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mcu-patch-faults-"))
    from toolchain.boards import load_board
    if boards is None:
        boards = ["host"] + (["mps2-an386"] if qemu and shutil.which("qemu-system-arm") else [])
    st = raw_store()
    g0, mres = model_case()
    verify = verifier([g0, mres.graph])
    out = dict(quick=quick, boards=list(boards), power_cuts=[], link_faults=[], rejections=[])
    for board in boards:
        fw = build_patch_firmware(board, st, KEY, work / f"fw-{board}", test_build=True)
        mfw, _ = build_patch_model_firmware(g0, board, KEY, work / f"mfw-{board}")
        qe = load_board(board).kind != "host"
        cases = [("model delta", mfw, weight_store(g0), weight_store(mres.graph), mres.data,
                  verify),
                 ("raw delta 5%", fw, st, mutate_store(st, 0.05, seed=4), None, None)]
        if not quick:
            cases += [("raw delta 100%", fw, st, mutate_store(st, 1.0, seed=5), None, None),
                      ("raw full", fw, st, mutate_store(st, 0.3, seed=6), "full", None)]
        for name, f, a, b, data, ver in cases:
            if data == "full":
                data = patch_between(a, b, KEY, 1, full=True)
            stride = 1 if not (quick and qe) else 3
            rep = power_cut_campaign(board, f, a, b, KEY, work / f"pc-{board}-{len(out['power_cuts'])}",
                                     data=data, stride=stride, torn_every=2, verify=ver)
            rep["case"] = name
            out["power_cuts"].append(rep)
            echo(f"power cuts {board:<11} {name:<15} {rep['trials']:>4} trials ({rep['torn']} torn) "
                 f"over {rep['ops']} flash ops: {rep['old']} old / {rep['new']} new after reboot, "
                 f"{rep['bad']} bad, {rep['seconds']} s")
        lf = link_fault_campaign(board, fw, st, mutate_store(st, 0.3, seed=9), KEY,
                                 trials=(3 if quick else (6 if qe else 20)), seed=1,
                                 drop=5e-4, dup=5e-4, corrupt=5e-4, delay=2e-3)
        lf["case"] = "drop/dup/corrupt/delay"
        cut = link_fault_campaign(board, fw, st, mutate_store(st, 1.0, seed=10), KEY,
                                  trials=(2 if quick else 4), seed=2, drop=0, dup=0, corrupt=0,
                                  delay=0, cut_after=3000)
        cut["case"] = "link cut every 3000 B"
        for rep in (lf, cut):
            out["link_faults"].append(rep)
            p = rep["proxy"]
            echo(f"link faults {board:<10} {rep['case']:<22} {rep['trials']:>3} sends, {rep['ok']} ok; "
                 f"proxy: {p['dropped']} dropped, {p['duplicated']} duplicated, {p['corrupted']} "
                 f"corrupted, {p['delayed']} delayed bytes, {p['cuts']} cuts; "
                 f"{rep['retransmits']} go-backs, {rep['reconnects']} reconnects")
        rj = rejections(board, fw, st)
        out["rejections"].append(rj)
        echo(f"rejections  {board:<10} {rj['ok']}/{rj['trials']} refused with the right status, "
             f"store unchanged")
    pc = out["power_cuts"]
    out["totals"] = dict(
        power_cut_trials=sum(r["trials"] for r in pc), power_cut_bad=sum(r["bad"] for r in pc),
        link_fault_sends=sum(r["trials"] for r in out["link_faults"]),
        link_fault_bad=sum(r["bad"] for r in out["link_faults"]),
        rejection_trials=sum(r["trials"] for r in out["rejections"]),
        rejection_bad=sum(r["trials"] - r["ok"] for r in out["rejections"]))
    out["seconds"] = round(time.monotonic() - t0, 1)
    t = out["totals"]
    echo(f"total: {t['power_cut_trials']} power cuts ({t['power_cut_bad']} bad), "
         f"{t['link_fault_sends']} sends through faults ({t['link_fault_bad']} bad), "
         f"{t['rejection_trials']} bad patches ({t['rejection_bad']} accepted) in {out['seconds']} s")
    path = json_path or os.path.join("build", "patch-faults.json")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=str)
        f.write("\n")
    echo(f"wrote {path}")
    shutil.rmtree(work, ignore_errors=True)
    return out


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--stm32", action="store_true",
                    help="the STM32 flash controller models (host-stm32f4, host-stm32l4)")
    a = ap.parse_args()
    r = run(a.json, a.quick, not a.no_qemu, boards=list(STM32_BOARDS) if a.stm32 else None)
    t = r["totals"]
    sys.exit(1 if t["power_cut_bad"] or t["link_fault_bad"] or t["rejection_bad"] else 0)

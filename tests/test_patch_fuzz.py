"""The protocol fuzzer in the suite (issue #15): a short fixed-seed run (>= 50,000 fuzz
items: random bytes, mutated frames with fixed CRCs, boundary values of every message
type, patch sequences) against the host board, and its sanitizer build when the board
file exists; no crash, no hang, a valid request answered correctly after every batch.
The long run is `make fuzz` (>= 1 M, bench-results/proto_fuzz.json)."""
import shutil

import pytest

from toolchain.patch.fuzz import FuzzFailure, Generator, available_boards, fuzz_case, fuzz_device

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def case():
    return fuzz_case(KEY)


def _fw(board, case, tmp_path_factory):
    if not shutil.which("cc"):
        pytest.skip("no host C compiler")
    from toolchain.patch.device import build_patch_firmware
    return build_patch_firmware(board, case[0], KEY, tmp_path_factory.mktemp(f"fuzz-{board}"),
                                test_build=True)


@pytest.mark.parametrize("board", ["host", "host-asan"])
def test_fuzz_short_fixed_seed(board, case, tmp_path_factory, monkeypatch):
    if board not in available_boards():
        pytest.skip(f"no hw/boards/{board}.toml on this branch")
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=0")   # LSan needs ptrace; no malloc
    fw = _fw(board, case, tmp_path_factory)
    st, chain, others = case
    rep = fuzz_device(board, fw, chain, KEY, frames=50_000, seed=15, others=others)
    assert not rep["failures"], rep["failures"]
    assert rep["frames"] == 50_000 and rep["wire_frames"] > 50_000
    assert rep["batches"] == 100 and rep["checks"] == 200
    assert set(rep["kinds"]) == {"random_bytes", "overlong", "random_type", "boundary",
                                 "mutated_fixed_crc", "mutated_raw", "bad_framing",
                                 "patch_sequence", "stream_sequence"}
    ds = rep["device_stats"]
    assert ds["bad_crc"] and ds["bad_frame"] and ds["oversized"] and ds["unknown_type"]
    assert rep["applied_max_seq"] >= 3          # valid patches went through the fuzz
    assert rep["answers"]["PATCH_APPLY"]["OK"] >= 3 and rep["answers"]["XFER_CHUNK"]["OK"]


def test_fuzzer_reports_a_crash(case, tmp_path_factory, monkeypatch):
    """The checks bite: an EXIT frame slipped into the stream is reported as a crash."""
    from toolchain.patch.fuzz import _wire
    from toolchain.link.protocol import Msg
    fw = _fw("host", case, tmp_path_factory)
    st, chain, others = case
    orig = Generator.frame
    calls = {"n": 0}

    def frame(self):
        calls["n"] += 1
        return _wire(Msg.EXIT, 7, b"\x03") if calls["n"] == 700 else orig(self)
    monkeypatch.setattr(Generator, "frame", frame)
    rep = fuzz_device("host", fw, chain, KEY, frames=2_000, seed=1, others=others, hang_s=5)
    assert rep["failures"] and "crash" in rep["failures"][0] and rep["batches"] == 1
    assert FuzzFailure

"""Patch streaming on a bad line (issue #15): adaptive chunk size (ChunkSizer), resume
from the device's staged offset after cuts, and a smoke run of the bad-line benchmark
(4e-3 per byte with cuts every 1.5 kB) on the host board."""
import shutil

import pytest

from toolchain.patch.send import CHUNK_FLOOR, ChunkSizer

KEY = bytes(range(32))


def test_chunk_sizer_halves_and_grows_deterministically():
    s = ChunkSizer(1020)
    assert s.size == 1020 and s.floor == CHUNK_FLOOR == 64
    s.lost()
    assert s.size == 1020                 # one loss: no change
    s.acked()
    s.lost()
    assert s.size == 1020                 # losses separated by an ack: not "in a row"
    s.lost()
    assert s.size == 510                  # two in a row: halved
    for _ in range(10):
        s.lost()
    assert s.size == 64 and s.smallest == 64        # the floor
    for _ in range(15):
        s.acked()
    assert s.size == 64
    s.acked()
    assert s.size == 128                  # 16 clean chunks: doubled
    for _ in range(15):
        s.acked()
    s.lost(cut=True)                      # a cut does not end the clean run...
    s.acked()
    assert s.size == 256
    s.lost(cut=True)
    s.lost(cut=True)                      # ...but two cuts in a row with nothing acked halve
    assert s.size == 128
    for _ in range(200):
        s.acked()
    assert s.size == 1020                 # never above the ceiling
    s.set_ceiling(300)
    assert s.size == 300
    # the same events give the same sizes
    ev = [0, 1, 1, 0, 1, 1, 1] + [0] * 40 + [1, 1]
    runs = []
    for _ in range(2):
        z, seen = ChunkSizer(1020), []
        for e in ev:
            z.lost() if e else z.acked()
            seen.append(z.size)
        runs.append(seen)
    assert runs[0] == runs[1]
    fixed = ChunkSizer(1020, adaptive=False)
    for _ in range(10):
        fixed.lost()
    assert fixed.size == 1020 and fixed.changes == 0


@pytest.fixture(scope="module")
def badline_fw(tmp_path_factory):
    if not shutil.which("cc"):
        pytest.skip("no host C compiler")
    from toolchain.patch.device import build_patch_firmware
    from toolchain.patch.stream_bench import bad_line_case
    st, data = bad_line_case(0.3, sizes=((1500, "int8", "weight"), (16, "int32", "bias"),
                                          (1500, "int8", "weight")), key=KEY)
    fw = build_patch_firmware("host", st, KEY, tmp_path_factory.mktemp("badline"),
                              test_build=True, werror=True)
    return fw, st, data


def test_resume_after_cuts_continues_from_device_offset(badline_fw):
    """Cuts every 1.5 kB, no errors: every reconnection resumes at the device's staged
    offset (BEGIN's answer), never from 0, and those offsets only grow."""
    from toolchain.patch.stream_bench import bad_line_run
    fw, st, data = badline_fw
    r = bad_line_run(fw, st, data, 0.0, seed=1, pace=0, limit_s=25)
    assert r["completed"], r["error"]
    assert r["reconnects"] >= 2 and r["proxy"]["cuts"] >= 2
    assert r["resumes_monotonic"]
    assert r["sent_bytes"] < len(data) + (r["reconnects"] + 1) * 8 * 1020   # no restart at 0


def test_resume_offsets_equal_device_staged_offset(badline_fw):
    """After a dropped link the sender's first chunk is at the offset the device staged."""
    from toolchain.devices import start_device
    from toolchain.link import Link
    from toolchain.patch.send import patch_status, send_patch
    fw, st, data = badline_fw
    with start_device("host", fw) as dev:
        url = dev.url
        dev.release()

        def cut(off, total):
            if off > len(data) // 2:
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            send_patch(lambda: Link.open(url), data, progress=cut, window=1, chunk=256)
        lk = Link.open(url)
        staged = patch_status(lk).staged_next
        assert 0 < staged < len(data)
        r = send_patch(None, data, link=lk)
        lk.close()
        assert r.resumes[0] == staged == r.resumed_from and r.applied
        assert r.sent_bytes <= len(data) - staged + 8 * 1020


def test_bad_line_smoke_completes_at_4e_3(badline_fw):
    """The benchmark's worst case on a small patch: 4e-3 per byte (drops + bit flips),
    a cut every 1.5 kB, paced at 115200 baud: completes, chunk size shrank."""
    from toolchain.patch.stream_bench import bad_line_run
    fw, st, data = badline_fw
    r = bad_line_run(fw, st, data, 4e-3, seed=3, limit_s=25)
    assert r["completed"], r["error"]
    assert r["chunk_min"] < r["chunk_max"] and r["proxy"]["corrupted"] > 0
    assert r["resumes_monotonic"]

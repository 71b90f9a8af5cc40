"""`make demo` for now: build the firmware for mps2-an386, boot it in QEMU, print the
device info and an echo round trip with timing. Later issues replace this with the
full pipeline (convert -> build with the model -> run a data set -> report)."""
from __future__ import annotations

import sys
import time

from toolchain.errors import USER_ERRORS


def main(board: str = "mps2-an386") -> int:
    from toolchain.build import build_firmware
    from toolchain.cli_device import _print_info
    from toolchain.devices import start_device
    t = time.perf_counter()
    fw = build_firmware(board)
    print(f"[1/3] built firmware for {board} in {time.perf_counter() - t:.2f} s"
          + (" (reused)" if fw.cached else ""))
    print("      " + fw.report().replace("\n", "\n      "))
    t = time.perf_counter()
    with start_device(board, fw) as dev:
        link = dev.link()
        info = link.info()
        print(f"[2/3] booted {board} (QEMU) and read its info in {time.perf_counter() - t:.2f} s")
        _print_info(info, dev.url)
        msg = b"hello, Cortex-M"
        times = []
        for _ in range(50):
            t = time.perf_counter()
            back = link.echo(msg)
            times.append(time.perf_counter() - t)
        times.sort()
        st = link.device_stats()
        print(f"[3/3] echo {back!r}: round trip median {times[len(times) // 2] * 1e3:.2f} ms "
              f"(min {times[0] * 1e3:.2f} ms over {len(times)}); device counted "
              f"{st['rx_frames']} frames in, {st['bad_crc']} with a bad CRC")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(*sys.argv[1:2]))
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)

"""Fault campaigns for the device apply (issue #6): power cuts at every flash
operation of a patch (device-side countdown, PATCH_FAULT), and a TCP proxy that drops,
duplicates, corrupts, delays bytes and cuts the link.

    rep = power_cut_campaign("host", fw, old_store, new_store, key, workdir)

Each power-cut trial: fresh flash file, device up, countdown armed at operation n,
`send_patch` until the device dies (QEMU/host process exits 99, mid-operation when
torn), reboot on the same flash file, then check the device holds exactly the old
or the new store (and, with `verify`, that its outputs match that model), then send
the patch again (resume) and check it ends on the new store.
"""
from __future__ import annotations

import os
import random
import select
import socket
import struct
import threading
import time
from pathlib import Path

from toolchain.errors import LinkError
from toolchain.link.protocol import Msg

from .device import patch_between
from .send import patch_status, send_patch


def _start(board, fw, flash):
    from toolchain.boards import load_board
    from toolchain.devices import start_device
    b = load_board(board)       # any host-process board (host, host-asan) takes --flash
    extra = ["--flash", str(flash)] if b.kind == "host" else ["-append", f"--flash {flash}"]
    return start_device(b, fw, extra_args=extra)


def power_cut_campaign(board, fw, old, new, key, workdir, *, seq: int = 1, data=None,
                       stride: int = 1, torn_every: int = 0, verify=None, window: int = 8,
                       limit: int | None = None, echo=None) -> dict:
    """Cut power at flash operation n = 1, 1+stride, ... of streaming + applying the
    patch old -> new (or `data`); torn_every=k makes every k-th cut a torn operation.
    verify(link, hash_hex) may check model outputs; it returns True when they match."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data = data or patch_between(old, new, key, seq)
    old_h, new_h = old.hexhash(), new.hexhash()
    flash = workdir / "flash.bin"
    # reference run: how many flash operations the whole send takes
    if flash.exists():
        flash.unlink()
    with _start(board, fw, flash) as dev:
        lk = dev.link()
        s0 = patch_status(lk)
        if s0.hash != old_h:
            raise AssertionError(f"device starts at {s0.hash}, expected {old_h}")
        send_patch(None, data, link=lk, window=window)
        s1 = patch_status(lk)
        assert s1.hash == new_h
        ops = s1.flash_ops - s0.flash_ops
    rep = dict(board=board, patch_bytes=len(data), ops=ops, trials=0, torn=0, old=0, new=0,
               bad=0, resumed=0, failures=[], seconds=0.0)
    t0 = time.monotonic()
    ns = list(range(1, ops + 1, stride))
    if limit:
        ns = ns[:limit]
    for i, n in enumerate(ns):
        torn = bool(torn_every) and i % torn_every == torn_every - 1
        if flash.exists():
            flash.unlink()
        died = False
        with _start(board, fw, flash) as dev:
            lk = dev.link()
            lk.request(Msg.PATCH_FAULT, struct.pack("<IB", n, int(torn)))
            try:
                send_patch(None, data, link=lk, window=window, reconnects=0)
            except LinkError:
                died = True
            rc = dev.wait_exit(10) if died else None
        rep["trials"] += 1
        rep["torn"] += int(torn)
        problem = None
        if not died or rc != 99:
            problem = f"op {n}: device did not die as armed (rc {rc})"
        else:
            with _start(board, fw, flash) as dev:
                lk = dev.link()
                st = patch_status(lk)
                if st.hash == old_h:
                    rep["old"] += 1
                elif st.hash == new_h:
                    rep["new"] += 1
                else:
                    problem = f"op {n}: after reboot the device holds {st.hash}"
                if problem is None and verify is not None and not verify(lk, st.hash):
                    problem = f"op {n}: outputs differ from model {st.hash[:16]}"
                if problem is None:
                    r = send_patch(None, data, link=lk, window=window, accept_applied=True)
                    if r.resumed_from:
                        rep["resumed"] += 1
                    st2 = patch_status(lk)
                    if st2.hash != new_h:
                        problem = f"op {n}: resend ended on {st2.hash}"
                    elif verify is not None and not verify(lk, st2.hash):
                        problem = f"op {n}: outputs after resend differ from the new model"
        if problem:
            rep["bad"] += 1
            rep["failures"].append(problem)
        if echo and (i + 1) % 10 == 0:
            echo(f"  {board}: {i + 1}/{len(ns)} power cuts, {rep['bad']} bad")
    rep["seconds"] = round(time.monotonic() - t0, 2)
    return rep


# ---- link faults: a TCP proxy ------------------------------------------------------------
class FaultProxy:
    """127.0.0.1 TCP proxy between host and device that drops, duplicates, corrupts and
    delays bytes (per direction, with probabilities per byte) and can cut the link.
    `rate` (bytes/s per direction, 0 = unlimited) emulates a UART's baud rate
    (115200 baud 8N1 = 11,520 B/s).

        with FaultProxy(dev_port, drop=1e-4, corrupt=1e-4) as px:
            Link.open(f"socket://127.0.0.1:{px.port}")
    """

    def __init__(self, target_port: int, *, drop=0.0, dup=0.0, corrupt=0.0, delay=0.0,
                 delay_s=0.02, cut_after: int | None = None, rate: float = 0.0,
                 seed: int = 0, directions=("up", "down")):
        self.target = target_port
        self.p = dict(drop=drop, dup=dup, corrupt=corrupt, delay=delay)
        self.delay_s = delay_s
        self.cut_after = cut_after           # cut every connection after exactly this many
        #                                      bytes (both directions; the rest is lost)
        self.rate = rate
        self.rng = random.Random(seed)
        self.directions = directions
        self.stats = dict(bytes=0, dropped=0, duplicated=0, corrupted=0, delayed=0, cuts=0,
                          connections=0)
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(4)
        self.port = self._lsock.getsockname()[1]
        self._stop = False
        self._conns: list = []
        self._thr = threading.Thread(target=self._accept, daemon=True)
        self._thr.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._stop = True
        try:
            self._lsock.close()
        except OSError:
            pass
        for c in self._conns:
            for s in c:
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        """Cut every open connection now (the device end stays up)."""
        for c in list(self._conns):
            for s in c:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
        self._conns.clear()
        self.stats["cuts"] += 1

    def _accept(self):
        while not self._stop:
            try:
                r, _, _ = select.select([self._lsock], [], [], 0.1)
                if not r:
                    continue
                cli, _ = self._lsock.accept()
            except OSError:
                return
            try:
                dev = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                cli.close()
                continue
            for s in (cli, dev):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.stats["connections"] += 1
            self._conns.append((cli, dev))
            threading.Thread(target=self._pump, args=(cli, dev), daemon=True).start()

    def _mangle(self, data: bytes, direction: str) -> tuple[bytes, float]:
        if direction not in self.directions or not any(self.p.values()):
            return data, 0.0
        out = bytearray()
        delay = 0.0
        rng, p = self.rng, self.p
        for b in data:
            x = rng.random()
            if x < p["drop"]:
                self.stats["dropped"] += 1
                continue
            x -= p["drop"]
            if x < p["corrupt"]:
                b ^= 1 << rng.randrange(8)
                self.stats["corrupted"] += 1
            elif x - p["corrupt"] < p["dup"]:
                out.append(b)
                self.stats["duplicated"] += 1
            elif x - p["corrupt"] - p["dup"] < p["delay"]:
                delay = max(delay, self.delay_s)
                self.stats["delayed"] += 1
            out.append(b)
        return bytes(out), delay

    def _pump(self, cli, dev):
        socks = {cli: (dev, "down"), dev: (cli, "up")}   # down = host -> device
        sent = 0
        budget_t = {"up": time.monotonic(), "down": time.monotonic()}
        while not self._stop:
            try:
                r, _, _ = select.select(list(socks), [], [], 0.1)
            except (OSError, ValueError):
                return
            for s in r:
                try:
                    data = s.recv(256 if self.rate else 4096)   # paced: fine-grained
                except OSError:
                    data = b""
                if not data:
                    for x in socks:
                        try:
                            x.close()
                        except OSError:
                            pass
                    return
                dst, direction = socks[s]
                cut_now = False
                if self.cut_after and sent + len(data) >= self.cut_after:
                    data = data[:self.cut_after - sent]     # cut exactly at the limit
                    cut_now = True
                self.stats["bytes"] += len(data)
                n_in = len(data)
                data, delay = self._mangle(data, direction)
                if delay:
                    time.sleep(delay)
                if self.rate:
                    # pace each direction at the UART rate (full duplex: one wire each way)
                    budget_t[direction] = (max(budget_t[direction], time.monotonic())
                                           + len(data) / self.rate)
                    wait = budget_t[direction] - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                try:
                    dst.sendall(data)
                except OSError:
                    return
                sent += n_in
                if cut_now:
                    self.stats["cuts"] += 1
                    for x in socks:
                        try:
                            x.shutdown(socket.SHUT_RDWR)
                            x.close()
                        except OSError:
                            pass
                    return


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def link_fault_campaign(board, fw, old, new, key, *, trials: int = 10, seed: int = 0,
                        drop=2e-4, dup=2e-4, corrupt=2e-4, delay=1e-3, cut_after=None,
                        echo=None) -> dict:
    """Send patches old -> new -> old ... through a faulty proxy, one device; every
    trial must end with the device on the patch's target (or refuse cleanly)."""
    from toolchain.link import Link
    from toolchain.devices import start_device
    rep = dict(board=board, trials=0, ok=0, bad=0, retransmits=0, timeouts=0, reconnects=0,
               proxy={}, failures=[])
    stores = [old, new]
    with start_device(board, fw) as dev:
        target = port_of(dev.url)
        dev.release()
        with FaultProxy(target, drop=drop, dup=dup, corrupt=corrupt, delay=delay,
                        cut_after=cut_after, seed=seed) as px:
            url = f"socket://127.0.0.1:{px.port}"

            def opener():
                return Link.open(url, timeout=0.5, retries=8)
            for t in range(trials):
                a, b = stores[t % 2], stores[(t + 1) % 2]
                data = patch_between(a, b, key, t + 1)
                try:
                    r = send_patch(opener, data, reconnects=50, chunk_timeout=0.5)
                    rep["retransmits"] += r.retransmits
                    rep["timeouts"] += r.timeouts
                    rep["reconnects"] += r.reconnects
                    ok = r.hash == b.hexhash()
                except Exception as e:  # noqa: BLE001 - recorded, the campaign goes on
                    ok = False
                    rep["failures"].append(f"trial {t}: {type(e).__name__}: {e}")
                rep["trials"] += 1
                rep["ok" if ok else "bad"] += 1
                if echo:
                    echo(f"  link faults: trial {t + 1}/{trials} {'ok' if ok else 'FAILED'}")
            rep["proxy"] = dict(px.stats)
        # final state, without the proxy
        lk = Link.open(dev.url, timeout=2)
        st = patch_status(lk)
        lk.close()
        rep["final_hash_ok"] = st.hash == stores[trials % 2].hexhash()
    return rep


def env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default

"""Board farms through labgrid: acquire a place on the coordinator, talk to its serial
port, flash through its driver where it has one, release it on every exit path.

    with acquire_place("rack1-m4", timeout=300, log=print) as lease:   # waits while locked
        lease.serial_url      # socket://exporter:4001 (NetworkSerialPort, raw TCP),
                              # rfc2217://... (ser2net), or /dev/ttyACM0 (RawSerialPort)
        lease.board           # the place's `board` tag (labgrid-client set-tags board=...)
        lease.flash(elf)      # the board TOML's [labgrid] flash driver, if any
    # released here: normal exit, exception, Ctrl-C or SIGTERM

The coordinator comes from `coordinator=`, else $LG_COORDINATOR, else 127.0.0.1:20408
(labgrid's default). The labgrid Python client (`labgrid.remote.client.ClientSession`)
is used in-process; labgrid is imported lazily, so the rest of mcu works without it.

A place locked by someone else is waited for (a message says who holds it) until
`timeout` seconds pass, then one line fails the command. A client killed with SIGKILL
cannot release its place: the lock stays with its host/user until someone runs
`labgrid-client -p PLACE release --kick` (the message says so).

Emulated boards on a farm: the exporter host runs each QEMU with the board's firmware
and exports its TCP serial server as a NetworkSerialPort (protocol raw), as ser2net
does for a real board's UART: the place looks the same to the client either way."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import io
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from toolchain.errors import McuError

DEFAULT_COORDINATOR = "127.0.0.1:20408"
SERIAL_CLASSES = ("NetworkSerialPort", "RawSerialPort")


class PlaceError(McuError):
    """A labgrid place cannot be used: unknown, busy past the timeout, no serial port,
    coordinator unreachable, labgrid missing."""


def coordinator_address(coordinator: str | None = None) -> str:
    return coordinator or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR


def _labgrid():
    try:
        from labgrid.remote import client
    except ImportError:
        raise PlaceError("--place needs labgrid: pip install labgrid (or "
                         "pip install 'mcu-ml-toolchain[test]')") from None
    return client


@contextlib.contextmanager
def _quiet():
    """labgrid's client prints ("acquired place X") and logs to the root logger; our
    commands print one line of their own instead."""
    prev = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(prev)


class Session:
    """A connection to the coordinator (labgrid's ClientSession on a private loop)."""

    def __init__(self, coordinator: str | None = None, connect_timeout: float = 10.0):
        lg = _labgrid()
        from labgrid.util.proxy import proxymanager
        self.address = coordinator_address(coordinator)
        self._lg = lg
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)     # grpc.aio binds its channel to it
        try:
            addr = proxymanager.get_grpc_address(self.address, default_port=20408)
            with _quiet():
                self.s = lg.ClientSession(addr, self.loop, args=argparse.Namespace(
                    allow_unmatched=False, kick=False))
                self.loop.run_until_complete(
                    asyncio.wait_for(self.s.start(), connect_timeout))
        except (asyncio.TimeoutError, lg.Error, OSError, ValueError) as e:
            self._close_loop()
            why = "no answer" if isinstance(e, asyncio.TimeoutError) else str(e).removeprefix(
                "Error: ")
            raise PlaceError(f"cannot reach the labgrid coordinator at {self.address} "
                             f"({why}); start labgrid-coordinator or set LG_COORDINATOR") \
                from None

    def run(self, coro, timeout: float = 10.0):
        with _quiet():
            return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def sleep(self, s: float) -> None:
        """Let the session receive place updates for s seconds."""
        self.loop.run_until_complete(asyncio.sleep(s))

    def places(self) -> dict:
        return dict(self.s.places)

    def match(self, pattern: str) -> list[str]:
        """Place names for a name, a glob (rack1-*), or as labgrid-client -p matches:
        a substring of names and aliases."""
        names = sorted(self.s.places)
        if pattern in self.s.places:
            return [pattern]
        if any(c in pattern for c in "*?["):
            return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        try:
            with _quiet():
                return sorted(self.s._match_places(pattern))
        except self._lg.Error:
            return []

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            with _quiet():
                self.loop.run_until_complete(asyncio.wait_for(self.s.stop(), 5))
                self.loop.run_until_complete(asyncio.wait_for(self.s.close(), 5))
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        self._close_loop()

    def _close_loop(self) -> None:
        try:
            self.loop.close()
        except Exception:  # noqa: BLE001
            pass


@dataclass
class Lease:
    """An acquired place (see the module docstring)."""
    place: str
    coordinator: str
    serial_url: str
    board: str | None
    resources: dict = field(default_factory=dict)      # name -> {cls, params}
    session: Session | None = field(default=None, repr=False)
    released: bool = False
    waited_s: float = 0.0

    def flash(self, elf, board) -> None:
        """Flash `elf` through the labgrid driver named by the board TOML's [labgrid]
        table (flash_driver = "OpenOCDDriver", flash_args = {...}); one line if the
        board has none or the place lacks the resource the driver binds to."""
        from toolchain.farm.flash import flash_through_place
        flash_through_place(self, elf, board)

    def release(self) -> None:
        """Release the place (the session stays open: release_all closes it)."""
        if self.released or self.session is None:
            return
        self.released = True
        try:
            self.session.run(self.session.s._release_place(self.place), timeout=10)
        except BaseException:  # noqa: BLE001 - best effort; a second Ctrl-C must not skip
            pass               # the other places


def release_all(leases) -> None:
    """Release every lease, then close their coordinator session(s)."""
    for lease in leases:
        lease.release()
    for sess in {id(l.session): l.session for l in leases if l.session}.values():
        sess.close()


def _serial_url(place: str, resources: dict) -> str:
    ser = [(n, r) for (n, cls), r in resources.items() if cls in SERIAL_CLASSES]
    if not ser:
        have = ", ".join(sorted(cls for (_, cls) in resources)) or "no resources"
        raise PlaceError(f"place {place} has no serial port (NetworkSerialPort or "
                         f"RawSerialPort; it has {have}): add one with labgrid-client -p "
                         f"{place} add-match EXPORTER/GROUP/NetworkSerialPort")
    if len(ser) > 1:
        ser.sort(key=lambda nr: (nr[0] != "console", nr[0]))   # a port named console wins
    _, r = ser[0]
    a = r.args
    if r.cls == "RawSerialPort":
        return a["port"]
    proto = a.get("protocol", "rfc2217")
    scheme = {"raw": "socket", "rfc2217": "rfc2217"}.get(proto)
    if scheme is None:
        raise PlaceError(f"place {place}: NetworkSerialPort protocol {proto!r} is not "
                         f"supported (raw or rfc2217)")
    return f"{scheme}://{a['host']}:{a['port']}"


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM ends the command like Ctrl-C does, so the finally blocks release the
    place (only in the main thread, where signal handlers can be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _holder_hint(place: str, holder: str) -> str:
    return (f"place {place} is locked by {holder}; if that client is gone (killed), free "
            f"it with: labgrid-client -p {place} release --kick")


def _try_acquire(sess: Session, name: str) -> Lease | None:
    """Acquire `name` if idle; None if it is (or just became) locked by someone."""
    lg = sess._lg
    p = sess.s.places.get(name)
    if p is None:
        raise PlaceError(f"place {name} is gone from the coordinator {sess.address}")
    if p.acquired:
        return None
    try:
        sess.run(sess.s._acquire_place(name))
    except (lg.UserError, lg.ServerError) as e:
        msg = str(e).removeprefix("Error: ")
        if "already acquired" in msg or "not available" in msg:
            return None             # someone was quicker: wait for it
        raise PlaceError(f"place {name}: {msg}") from None
    except asyncio.TimeoutError:
        raise PlaceError(f"the coordinator {sess.address} did not answer acquiring place "
                         f"{name}") from None
    lease = Lease(name, sess.address, "", None, session=sess)
    try:
        p = sess.s.places[name]
        res = sess.s.get_target_resources(p)
        lease.resources = {n: dict(cls=cls, params=dict(r.args)) for (n, cls), r in res.items()}
        lease.serial_url = _serial_url(name, res)
        lease.board = (p.tags or {}).get("board")
    except BaseException as e:
        lease.release()
        if isinstance(e, lg.Error):
            raise PlaceError(f"place {name}: {str(e).removeprefix('Error: ')}") from None
        raise
    return lease


def acquire_places(patterns, count: int | None = None, *, timeout: float | None = None,
                   coordinator: str | None = None, log=None, poll: float = 0.25,
                   prefer: int = 0) -> list[Lease]:
    """Acquire `count` places among those the patterns match (each a name, alias or
    glob; default: one per pattern), over one coordinator session. Waits while they are
    locked, up to `timeout` s (None: forever); releases what it got if it fails or is
    interrupted. Give the result to release_all(). prefer: try the candidates from this
    index on first (pytest -n worker k starts at place k, so workers spread out)."""
    if isinstance(patterns, str):
        patterns = [patterns]
    patterns = list(patterns)
    leases: list[Lease] = []
    t0 = time.monotonic()
    sess = Session(coordinator)
    try:
        cands: list[str] = []
        for pat in patterns:
            got = sess.match(pat)
            if not got:
                known = ", ".join(sorted(sess.places())) or "none"
                raise PlaceError(f"unknown place {pat!r} on the coordinator {sess.address} "
                                 f"(places: {known}); create it with labgrid-client -p {pat} "
                                 f"create")
            cands += [g for g in got if g not in cands]
        if cands and prefer:
            k = prefer % len(cands)
            cands = cands[k:] + cands[:k]
        want = count or len(patterns)
        if want > len(cands):
            raise PlaceError(f"{want} places wanted but {' '.join(patterns)} match only "
                             f"{len(cands)}: {', '.join(cands)}")
        said: set = set()
        while True:
            for name in cands:
                if len(leases) == want:
                    break
                if any(l.place == name for l in leases):
                    continue
                lease = _try_acquire(sess, name)
                if lease is not None:
                    lease.waited_s = time.monotonic() - t0
                    leases.append(lease)
            if len(leases) == want:
                return leases
            mine = {l.place for l in leases}
            busy = {n: sess.s.places[n].acquired for n in cands if n not in mine
                    and n in sess.s.places and sess.s.places[n].acquired}
            if timeout is not None and time.monotonic() - t0 >= timeout:
                n, who = next(iter(busy.items())) if busy else (cands[0], "someone")
                raise PlaceError(f"timed out after {timeout:g} s waiting: "
                                 + _holder_hint(n, who))
            for n, who in busy.items():
                if log and (n, who) not in said:
                    said.add((n, who))
                    log(f"waiting: {_holder_hint(n, who)}"
                        + (f" (giving up after --place-timeout {timeout:g} s)"
                           if timeout is not None else ""))
            sess.sleep(poll)
    except BaseException:
        for l in leases:
            l.release()
        sess.close()
        raise


def create_places(places: dict, *, coordinator: str | None = None) -> None:
    """Farm admin, as `labgrid-client -p NAME create / add-match / set-tags` do:
    places = {name: (match pattern(s) EXPORTER/GROUP/CLS[/NAME], {tag: value})}.
    Existing places are kept (their matches and tags are added to)."""
    sess = Session(coordinator)
    try:
        for name, (patterns, tags) in places.items():
            if isinstance(patterns, str):
                patterns = [patterns]
            sess.s.args = argparse.Namespace(place=name, patterns=list(patterns),
                                             tags=[f"{k}={v}" for k, v in (tags or {}).items()],
                                             allow_unmatched=False, kick=False)
            if name not in sess.s.places:
                sess.run(sess.s.add_place())
            sess.run(sess.s.add_match())
            if tags:
                sess.run(sess.s.set_tags())
    except sess._lg.Error as e:
        raise PlaceError(f"creating places on {sess.address}: "
                         f"{str(e).removeprefix('Error: ')}") from None
    finally:
        sess.close()


def exported_resources(coordinator: str | None = None) -> dict:
    """{exporter/group/cls/name: params} of everything the exporters announce."""
    sess = Session(coordinator)
    try:
        out = {}
        for exp, groups in sess.s.resources.items():
            for g, res in groups.items():
                for n, r in res.items():
                    out[f"{exp}/{g}/{r.cls}/{n}"] = dict(r.args)
        return out
    finally:
        sess.close()


def place_holder(name: str, coordinator: str | None = None) -> str | None:
    """Who holds place `name` ("host/user"), or None when it is free."""
    sess = Session(coordinator)
    try:
        p = sess.s.places.get(name)
        if p is None:
            raise PlaceError(f"unknown place {name!r} on the coordinator {sess.address}")
        return p.acquired
    finally:
        sess.close()


@contextlib.contextmanager
def acquire_place(pattern: str, *, timeout: float | None = None,
                  coordinator: str | None = None, log=None):
    """One place as a context manager (see the module docstring)."""
    with sigterm_as_interrupt():
        [lease] = acquire_places([pattern], 1, timeout=timeout, coordinator=coordinator,
                                 log=log)
        if log:
            log(f"acquired place {lease.place} ({lease.serial_url}"
                + (f", board {lease.board}" if lease.board else "") + ")")
        try:
            yield lease
        finally:
            release_all([lease])


@contextlib.contextmanager
def leased_places(patterns, count: int | None = None, *, timeout: float | None = None,
                  coordinator: str | None = None, log=None):
    """Several places (parallel HIL) as a context manager; all released on exit."""
    with sigterm_as_interrupt():
        leases = acquire_places(patterns, count, timeout=timeout, coordinator=coordinator,
                                log=log)
        if log:
            log(f"acquired place{'s' if len(leases) > 1 else ''} "
                + ", ".join(f"{l.place} ({l.serial_url})" for l in leases))
        try:
            yield leases
        finally:
            release_all(leases)


__all__ = ["PlaceError", "Lease", "acquire_place", "acquire_places", "leased_places",
           "release_all", "create_places", "exported_resources", "place_holder",
           "sigterm_as_interrupt",
           "coordinator_address", "DEFAULT_COORDINATOR"]

"""Compiled-object cache for firmware builds: ccache's "direct mode", in small.

Most of a firmware is the same from model to model (runtime kernels, app, board code);
only the generated model sources change. An object is reused when the compiler (path,
size, mtime), its command line (with the build directory written as @B, the output and
dependency-file paths left out), the source bytes and the bytes of every header the
compiler read for it (from its -MD dependency file, recorded on the first compile) are
all the same as on a compile that succeeded. Its warnings are replayed into the build
log, so -Werror builds stay honest.

    cache = ObjectCache.default(build_dir)      # None when MCU_NO_CACHE=1
    hit = cache.fetch(cc, cmd, src, obj)        # -> stderr text, or None on a miss
    cache.store(cc, cmd, src, obj, depfile, stderr)

Location: $MCU_CACHE_DIR, else $XDG_CACHE_HOME/mcu/objects, else ~/.cache/mcu/objects.
Writes are atomic (temporary file + rename), so parallel builds may share it; the
oldest entries are pruned beyond MAX_ENTRIES."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

MAX_ENTRIES = 4000


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(p: Path) -> str | None:
    try:
        return _sha(p.read_bytes())
    except OSError:
        return None


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_depfile(text: str) -> list[str]:
    """The prerequisites of a make-style dependency file (gcc -MD), in order."""
    out: list[str] = []
    for rule in text.replace("\\\n", " ").splitlines():
        if ":" not in rule:
            continue
        deps = rule.split(":", 1)[1].replace("\\ ", "\0")   # escaped spaces in names
        out += [d.replace("\0", " ") for d in deps.split()]
    return out


class ObjectCache:
    def __init__(self, root: Path, build_dir: Path):
        self.root = Path(root)
        self.build_dir = str(Path(build_dir).resolve())
        (self.root / "obj").mkdir(parents=True, exist_ok=True)
        (self.root / "manifest").mkdir(parents=True, exist_ok=True)

    @classmethod
    def default(cls, build_dir: Path) -> "ObjectCache | None":
        if os.environ.get("MCU_NO_CACHE", "") not in ("", "0"):
            return None
        root = os.environ.get("MCU_CACHE_DIR")
        if not root:
            base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
            root = str(Path(base) / "mcu" / "objects")
        try:
            return cls(Path(root), build_dir)
        except OSError:               # a read-only home: build without a cache
            return None

    # -- keys ---------------------------------------------------------------------
    def _norm(self, s: str) -> str:
        return s.replace(self.build_dir, "@B")

    def _unnorm(self, s: str) -> Path:
        return Path(s.replace("@B", self.build_dir, 1) if s.startswith("@B") else s)

    def _key(self, cc: str, cmd: list[str], src: Path) -> str | None:
        src_sha = _file_sha(src)
        if src_sha is None:
            return None
        ccp = shutil.which(cc) or cc
        try:
            st = os.stat(ccp)
            cc_id = f"{os.path.realpath(ccp)}:{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            return None
        args, skip = [], False
        for a in cmd[1:]:
            if skip:
                skip = False
                continue
            if a in ("-o", "-MF"):
                skip = True
                continue
            args.append(self._norm(a))
        return _sha(json.dumps([cc_id, args, self._norm(str(src)), src_sha]).encode())

    # -- use ----------------------------------------------------------------------
    def fetch(self, cc: str, cmd: list[str], src: Path, obj: Path) -> str | None:
        """Copy a cached object to `obj` and return the compile's stderr; None: a miss."""
        key = self._key(cc, cmd, src)
        if key is None:
            return None
        man = self.root / "manifest" / f"{key}.json"
        try:
            entries = json.loads(man.read_text())
        except (OSError, ValueError):
            return None
        for e in entries:
            if all(_file_sha(self._unnorm(p)) == h for p, h in e["deps"]):
                blob = self.root / "obj" / e["obj"]
                try:
                    shutil.copyfile(blob, obj)
                    os.utime(man)
                except OSError:
                    return None
                return e.get("stderr", "")
        return None

    def store(self, cc: str, cmd: list[str], src: Path, obj: Path, depfile: Path,
              stderr: str) -> None:
        key = self._key(cc, cmd, src)
        if key is None:
            return
        try:
            deps = parse_depfile(depfile.read_text())
            data = obj.read_bytes()
        except OSError:
            return
        src_r = str(Path(src).resolve())
        recorded = []
        for d in deps[1:] if deps else []:       # the first prerequisite is the source
            p = Path(d) if os.path.isabs(d) else (Path.cwd() / d)
            if str(p.resolve()) == src_r:
                continue
            h = _file_sha(p)
            if h is None:
                return
            recorded.append([self._norm(str(p.resolve())), h])
        name = _sha(data) + ".o"
        blob = self.root / "obj" / name
        if not blob.exists():
            _atomic_write(blob, data)
        man = self.root / "manifest" / f"{key}.json"
        try:
            entries = json.loads(man.read_text())
        except (OSError, ValueError):
            entries = []
        entries = [e for e in entries if e["deps"] != recorded][-7:]
        entries.append({"deps": recorded, "obj": name, "stderr": stderr})
        _atomic_write(man, json.dumps(entries).encode())
        self._prune()

    def _prune(self) -> None:
        mans = list((self.root / "manifest").glob("*.json"))
        if len(mans) <= MAX_ENTRIES:
            return
        mans.sort(key=lambda p: p.stat().st_mtime)
        for p in mans[: len(mans) - MAX_ENTRIES // 2]:
            p.unlink(missing_ok=True)
        live = set()
        for p in (self.root / "manifest").glob("*.json"):
            try:
                live |= {e["obj"] for e in json.loads(p.read_text())}
            except (OSError, ValueError):
                pass
        for b in (self.root / "obj").glob("*.o"):
            if b.name not in live:
                b.unlink(missing_ok=True)

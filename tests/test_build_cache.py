"""The compiled-object cache (toolchain/build_cache.py): a second build of the same
sources in another directory compiles nothing it compiled before, a changed header
recompiles exactly the objects that read it, warnings are replayed, and the image is
the same as without the cache."""
from __future__ import annotations

import shutil

import pytest

from toolchain.build import build_firmware
from toolchain.build_cache import parse_depfile

needs_cc = pytest.mark.skipif(not shutil.which("cc"), reason="needs a host C compiler (cc)")


def test_depfile_parsing():
    text = "o/a.o: /s/a.c /s/x.h \\\n /s/with\\ space.h\n/s/x.h:\n"
    assert parse_depfile(text) == ["/s/a.c", "/s/x.h", "/s/with space.h"]


def _sources(d, value, warn=False):
    d.mkdir(parents=True, exist_ok=True)
    (d / "extra.h").write_text(f"#define EXTRA_VALUE {value}\n")
    (d / "extra.c").write_text('#include "extra.h"\nint extra_value(void);\n'
                               "int extra_value(void) { "
                               + ("int unused_var; " if warn else "")
                               + "return EXTRA_VALUE; }\n")
    return [d / "extra.c"], [d]


@needs_cc
def test_second_build_comes_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MCU_CACHE_DIR", str(tmp_path / "cache"))
    srcs, incs = _sources(tmp_path / "src", 1)
    a = build_firmware("host", tmp_path / "a", extra_sources=srcs, include_dirs=incs)
    assert a.objects_from_cache == 0
    b = build_firmware("host", tmp_path / "b", extra_sources=srcs, include_dirs=incs)
    n_objs = len(list((tmp_path / "b" / "obj").glob("*.o")))
    assert b.objects_from_cache == n_objs > 5
    # a header change recompiles the one object that includes it, and the few that
    # print the build id (it hashes every input), nothing else
    _sources(tmp_path / "src", 2)
    c = build_firmware("host", tmp_path / "c", extra_sources=srcs, include_dirs=incs)
    id_users = sum("-DMCU_BUILD_ID" in ln for ln in
                   (tmp_path / "c" / "build.log").read_text().splitlines() if " -c " in ln)
    assert 1 <= id_users <= 3
    assert c.objects_from_cache == n_objs - 1 - id_users
    monkeypatch.setenv("MCU_NO_CACHE", "1")
    d = build_firmware("host", tmp_path / "d", extra_sources=srcs, include_dirs=incs)
    assert d.objects_from_cache == 0
    assert c.flash_used == d.flash_used


@needs_cc
def test_cached_warnings_are_replayed(tmp_path, monkeypatch):
    monkeypatch.setenv("MCU_CACHE_DIR", str(tmp_path / "cache"))
    srcs, incs = _sources(tmp_path / "src", 3, warn=True)
    build_firmware("host", tmp_path / "a", extra_sources=srcs, include_dirs=incs)
    b = build_firmware("host", tmp_path / "b", extra_sources=srcs, include_dirs=incs)
    assert b.objects_from_cache > 0
    assert "unused_var" in (tmp_path / "b" / "build.log").read_text()

"""Fleet keys (issue #15): HKDF-SHA256 against RFC 5869's test vectors, per-device keys
from one fleet secret, and the CLI flows (`keygen --fleet --device-id`, `--fleet
--device-id` wherever -k is taken; -k unchanged)."""
import copy

import pytest
from click.testing import CliRunner

from toolchain.patch.errors import PatchError
from toolchain.patch.fleet import (device_key, hkdf, hkdf_expand, hkdf_extract,
                                   load_fleet_secret)

# RFC 5869 Appendix A, test cases 1-3 (SHA-256): IKM, salt, info, L, PRK, OKM
RFC5869 = [
    ("0b" * 22, "000102030405060708090a0b0c", "f0f1f2f3f4f5f6f7f8f9", 42,
     "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
     "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
    (bytes(range(0x00, 0x50)).hex(), bytes(range(0x60, 0xb0)).hex(),
     bytes(range(0xb0, 0x100)).hex(), 82,
     "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
     "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
     "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
     "cc30c58179ec3e87c14c01d5c1f3434f1d87"),
    ("0b" * 22, "", "", 42,
     "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
     "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
]


@pytest.mark.parametrize("ikm,salt,info,n,prk,okm", RFC5869)
def test_hkdf_rfc5869_vectors(ikm, salt, info, n, prk, okm):
    ikm, salt, info = bytes.fromhex(ikm), bytes.fromhex(salt), bytes.fromhex(info)
    assert hkdf_extract(salt, ikm).hex() == prk
    assert hkdf_expand(bytes.fromhex(prk), info, n).hex() == okm
    assert hkdf(ikm, salt, info, n).hex() == okm


def test_device_keys():
    fleet = bytes(range(32))
    a, b = device_key(fleet, "sensor-0001"), device_key(fleet, "sensor-0002")
    assert len(a) == 32 and a != b and a == device_key(fleet, b"sensor-0001")
    assert device_key(bytes(range(1, 33)), "sensor-0001") != a      # another fleet
    assert a.hex() == hkdf(fleet, b"mcu-patch-fleet-v1",
                           b"mcu-patch-device-key\x00sensor-0001", 32).hex()
    for bad in ("", "x" * 129, "a\nb"):
        with pytest.raises(PatchError):
            device_key(fleet, bad)
    with pytest.raises(PatchError):
        device_key(bytes(16), "d")


def test_load_fleet_secret(tmp_path):
    p = tmp_path / "f"
    p.write_text(bytes(range(32)).hex() + "\n")
    assert load_fleet_secret(p) == bytes(range(32))
    p.write_bytes(bytes(range(48)))
    assert load_fleet_secret(p) == bytes(range(48))
    p.write_text("abcd\n")
    with pytest.raises(PatchError):
        load_fleet_secret(p)


def test_cli_fleet_flows(tmp_path):
    pytest.importorskip("converters.tflite_writer")
    from converters.tflite_writer import write_tflite
    from toolchain.cli import main
    from toolchain.patch.toy import toy_int8_graph
    d = tmp_path
    g = toy_int8_graph()
    n = copy.deepcopy(g)
    n.t("fc.w").data[0, :30] = 7
    (d / "old.tflite").write_bytes(write_tflite(g))
    (d / "new.tflite").write_bytes(write_tflite(n))

    def run(*a):
        return CliRunner().invoke(main, ["patch", *map(str, a)])
    assert run("keygen", d / "fleet.secret").exit_code == 0          # the old flow
    r = run("keygen", "--fleet", d / "fleet.secret", "--device-id", "dev-7", "-o", d / "dev7.key")
    assert r.exit_code == 0 and "dev-7" in r.output, r.output
    want = device_key(load_fleet_secret(d / "fleet.secret"), "dev-7")
    assert (d / "dev7.key").read_text().strip() == want.hex()
    assert run("keygen", "--fleet", d / "fleet.secret", "--device-id", "dev-8",
               "-o", d / "dev8.key").exit_code == 0
    # sign with the fleet secret + id, check with the device's own key file, and back
    assert run("diff", d / "old.tflite", d / "new.tflite", "--fleet", d / "fleet.secret",
               "--device-id", "dev-7", "--seq", 1, "-o", d / "p.mcup").exit_code == 0
    r = run("verify", d / "p.mcup", "-k", d / "dev7.key", "--base", d / "old.tflite")
    assert r.exit_code == 0 and "OK" in r.output, r.output
    r = run("verify", d / "p.mcup", "--fleet", d / "fleet.secret", "--device-id", "dev-7",
            "--base", d / "old.tflite")
    assert r.exit_code == 0, r.output
    # another device's key (derived or from its file) refuses it
    for args in (["-k", d / "dev8.key"], ["--fleet", d / "fleet.secret", "--device-id", "dev-8"]):
        r = run("verify", d / "p.mcup", *args, "--base", d / "old.tflite")
        assert r.exit_code != 0 and "another key" in r.output and "Traceback" not in r.output
    # option combinations: one line, usage error
    for args in (["--fleet", d / "fleet.secret"], ["--device-id", "x"],
                 ["-k", d / "dev7.key", "--fleet", d / "fleet.secret", "--device-id", "dev-7"], []):
        r = run("verify", d / "p.mcup", *args, "--base", d / "old.tflite")
        assert r.exit_code == 2 and "Traceback" not in r.output, (args, r.output)
    r = run("keygen", "--fleet", d / "fleet.secret", "-o", d / "x.key")
    assert r.exit_code == 2 and not (d / "x.key").exists()

"""`mcu patch keygen|diff|show|verify|apply|train|bench`: partial weight patches (issue #6).

Models in and out are int8 `.tflite` files (converters.tflite_reader / tflite_writer);
the weight store and its hash are defined on the IR (docs/patch-format.md), so any int8
model the toolchain reads can be patched. Keys: 32 bytes, raw or 64 hex digits.
"""
from __future__ import annotations

import os
from pathlib import Path

import click

from toolchain.cli.common import atomic_write, check_outputs, write_json


@click.group("patch")
def patch():
    """Partial weight patches: make, inspect, verify and apply (host side)."""


# -- helpers -------------------------------------------------------------------------------
def _load_model(path):
    from converters import load_model
    from toolchain.patch.errors import PatchModelError
    from toolchain.subnets.export import is_export
    if is_export(path):
        raise PatchModelError(f"{path} is a subnet export: mcu patch does not update subnet "
                              "stores (one store shared by every level); re-export and rebuild "
                              "it instead (mcu subnets export/train, mcu build)")
    g = load_model(path)
    if any(t.dtype == "float32" for t in g.constants()):
        raise PatchModelError(f"{path}: not an int8 model (patches address int8 weight stores; "
                              "quantize it first with `mcu convert`)")
    return g


def _save_model(graph, path):
    from converters.tflite_writer import write_tflite
    from toolchain.patch.errors import PatchModelError
    if not str(path).endswith(".tflite"):
        raise PatchModelError(f"{path}: models are written as .tflite")
    atomic_write(path, write_tflite(graph))


def _read_patch(path) -> bytes:
    from toolchain.patch.errors import PatchError
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise PatchError(f"cannot read patch {path}: {e.strerror}") from None


def _key(path):
    from toolchain.patch.format import load_key
    if isinstance(path, tuple):                     # ("fleet", secret file, device id)
        from toolchain.patch.fleet import device_key, load_fleet_secret
        return device_key(load_fleet_secret(path[1]), path[2])
    return load_key(path) if path else None


def key_option(required=False, help="Device key file."):
    """-k KEY, or --fleet SECRET --device-id ID (the device's key derived with HKDF,
    toolchain/patch/fleet.py); the command gets key_path for _key()."""
    import functools

    def deco(f):
        @functools.wraps(f)
        def wrapper(*a, key_path=None, fleet=None, device_id=None, **kw):
            if fleet is not None or device_id is not None:
                if key_path:
                    raise click.UsageError("give -k KEY or --fleet SECRET --device-id ID, not both")
                if fleet is None or device_id is None:
                    raise click.UsageError("--fleet and --device-id go together")
                key_path = ("fleet", fleet, device_id)
            elif required and not key_path:
                raise click.UsageError("Missing option '--key' / '-k' (or --fleet SECRET "
                                       "--device-id ID)")
            return f(*a, key_path=key_path, **kw)
        wrapper = click.option("--device-id", help="Device id for --fleet.")(wrapper)
        wrapper = click.option("--fleet", type=click.Path(exists=True, dir_okay=False),
                               help="Fleet secret file: use the key of --device-id derived "
                                    "from it (HKDF-SHA256) instead of -k.")(wrapper)
        return click.option("--key", "-k", "key_path", type=click.Path(exists=True, dir_okay=False),
                            help=help)(wrapper)
    return deco


def _fmt_bytes(n):
    return f"{n:,} B"


def _check_patch_outputs(out, out_model, json_path):
    """Before any training or diffing: every output can be written, the model as .tflite."""
    check_outputs(out, out_model, json_path,
                  suffixes={str(out_model): (".tflite",)} if out_model else None)


def _write_patch(res, out, out_model, json_path, extra=None):
    if out_model:
        _save_model(res.graph, out_model)
    atomic_write(out, res.data)
    i = res.info
    click.echo(f"patch {out}: {i['type']}, seq {i['seq']}, {i['entries']:,} entries in "
               f"{i['groups']} tensors, {_fmt_bytes(i['bytes'])} "
               f"({100 * i['bytes'] / max(i['model_bytes'], 1):.1f} % of the "
               f"{_fmt_bytes(i['model_bytes'])} of weights+biases)")
    click.echo(f"  conv/fc weights changed: {i['weights_changed']:,} of {i['weights_total']:,}"
               + (f" (budget {i['budget']:g}: {i['selected']:,} selected)" if "budget" in i else ""))
    click.echo(f"  base   {i['base']}\n  target {i['target']}")
    from toolchain.patch.stream import stream_estimate
    s = stream_estimate(i["bytes"])
    click.echo(f"  streaming at {s['baud']} baud: ~{s['seconds']:.2f} s (estimate, "
               f"{s['wire_bytes']:,} B on the wire)")
    write_json(json_path, dict(i, **(extra or {}), stream=s, patch=str(out)))


# -- commands -------------------------------------------------------------------------------
@patch.command("keygen")
@click.argument("out", type=click.Path(dir_okay=False), required=False)
@click.option("-o", "--out", "out_opt", type=click.Path(dir_okay=False), help="Key file to write.")
@click.option("--raw", is_flag=True, help="Write 32 raw bytes instead of 64 hex digits.")
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
@click.option("--fleet", type=click.Path(exists=True, dir_okay=False),
              help="Fleet secret: write the key of --device-id derived from it (HKDF-SHA256).")
@click.option("--device-id", help="Device id (with --fleet).")
def keygen_cmd(out, out_opt, raw, force, fleet, device_id):
    """Create a patch key: 32 random bytes (a device key, or a fleet secret), or with
    --fleet SECRET --device-id ID the device's key derived from the fleet secret."""
    from toolchain.patch.errors import PatchError
    from toolchain.patch.format import key_id
    if out and out_opt and out != out_opt:
        raise click.UsageError("give the key file once (OUT or -o)")
    out = out or out_opt
    if not out:
        raise click.UsageError("Missing the key file to write (OUT or -o)")
    if (fleet is None) != (device_id is None):
        raise click.UsageError("--fleet and --device-id go together")
    if os.path.exists(out) and not force:
        raise PatchError(f"{out} exists; refusing to overwrite a key (use --force)")
    if fleet:
        from toolchain.patch.fleet import device_key, load_fleet_secret
        k = device_key(load_fleet_secret(fleet), device_id)
    else:
        k = os.urandom(32)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(k if raw else (k.hex() + "\n").encode())
    click.echo(f"key {out}: key id {key_id(k).hex()}"
               + (f" (device {device_id!r} of fleet {fleet})" if fleet else ""))


@patch.command("diff")
@click.argument("old", type=click.Path(exists=True))
@click.argument("new", type=click.Path(exists=True))
@key_option(required=True)
@click.option("--seq", type=click.IntRange(1, 2**32 - 1), required=True,
              help="Sequence number (above the device's last applied one).")
@click.option("--budget", type=click.FloatRange(0, 1), default=None,
              help="Fraction of conv/fc weights that may change (top by (w_new-w_old)^2); "
                   "default: all that differ.")
@click.option("--full", is_flag=True, help="Make a FULL patch (every weight and bias, dense).")
@click.option("--zlib", is_flag=True, help="Compress the payload with zlib (host archival only: "
                                           "the device accepts uncompressed patches).")
@click.option("--no-old", "no_old", is_flag=True,
              help="DELTA without old values: ~1/3 smaller, roll-forward only (no rollback "
                   "from the patch; the base is still verified by its store hash).")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Patch file.")
@click.option("--out-model", type=click.Path(dir_okay=False),
              help="Also write the model the device will hold afterwards (.tflite).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures as JSON.")
def diff_cmd(old, new, key_path, seq, budget, full, zlib, no_old, out, out_model, json_path):
    """Patch from the deployed OLD model to NEW (trained elsewhere; same structure). NEW's
    weights are re-quantized in OLD's scales."""
    from toolchain.patch.format import COMP_NONE, COMP_ZLIB
    from toolchain.patch.make import diff_patch
    _check_patch_outputs(out, out_model, json_path)
    g_old, g_new = _load_model(old), _load_model(new)
    from toolchain.patch.errors import PatchError
    from toolchain.patch.store import store_hash
    if store_hash(g_old) == store_hash(g_new):
        raise PatchError(f"{old} and {new} are the same model ({store_hash(g_old)[:16]}); "
                         "there is nothing to patch")
    res = diff_patch(g_old, g_new, _key(key_path), seq,
                     None if full else budget, "full" if full else "delta",
                     COMP_ZLIB if zlib else COMP_NONE, with_old=not no_old)
    _write_patch(res, out, out_model, json_path)


@patch.command("show")
@click.argument("patch_file", type=click.Path(exists=True, dir_okay=False))
@key_option(help="Key file: also check the tag.")
@click.option("--base", type=click.Path(exists=True, dir_okay=False),
              help="Model (.tflite): name the tensors and compare the base hash.")
@click.option("--records", type=int, default=0, help="Print the first N records of each tensor.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write as JSON.")
def show_cmd(patch_file, key_path, base, records, json_path):
    """Print a patch: header, per-tensor counts and byte sizes, tag status."""
    from toolchain.patch.errors import PatchAuthError
    from toolchain.patch.format import COMP_NAMES, HEADER_SIZE, TAG_SIZE, decode_patch, key_id
    data = _read_patch(patch_file)
    key = _key(key_path)
    tag = "not checked (no --key)"
    try:
        p = decode_patch(data, key)
        if key is not None:
            tag = "OK"
    except PatchAuthError as e:
        p = decode_patch(data)          # still show it, but say so
        tag = f"BAD ({e})"
    names, base_note = {}, ""
    if base:
        from toolchain.patch.store import weight_store
        st = weight_store(_load_model(base))
        names = {i: (t.name, t.dtype, t.size) for i, t in enumerate(st.tensors)}
        base_note = "  (matches --base)" if st.hash() == p.base_hash else "  (differs from --base)"
    olds = "" if p.type_name == "full" else (", with old values" if p.has_old else
                                             ", new values only (roll-forward)")
    click.echo(f"patch {patch_file}: {len(data):,} B, format v1, type {p.type_name}{olds}, "
               f"compression {COMP_NAMES[p.compression]}")
    click.echo(f"  sequence  {p.seq}")
    click.echo(f"  base      {p.base_hash.hex()}{base_note}")
    click.echo(f"  target    {p.target_hash.hex()}")
    click.echo(f"  payload   {p.payload_len:,} B stored, {p.raw_len:,} B raw, digest "
               f"{p.payload_digest.hex()[:16]}… OK")
    click.echo(f"  entries   {p.entries:,} in {len(p.groups)} tensors; header {HEADER_SIZE} B, "
               f"tag {TAG_SIZE} B")
    kid = p.key_id.hex()
    click.echo(f"  tag       HMAC-SHA256, key id {kid}: {tag}"
               + ("" if key is None or key_id(key) == p.key_id else " (key id differs)"))
    click.echo(f"  {'tensor':>6}  {'name':<28} {'mode':<6} {'elem':>4} {'entries':>8} {'bytes':>8}")
    groups = []
    for g in p.groups:
        nm, dt, size = names.get(g.tensor, ("", "", None))
        nb = g.encoded_size(p.has_old)
        frac = f" ({100 * g.count / size:.1f} %)" if size else ""
        click.echo(f"  {g.tensor:>6}  {nm[:28]:<28} {'dense' if g.dense else 'sparse':<6} "
                   f"{g.elem_size:>4} {g.count:>8} {nb:>8}{frac}")
        for j in range(min(records, g.count)):
            old = "" if g.old is None else f" (old {int(g.old[j])})"
            click.echo(f"          [{int(g.offsets[j])}] = {int(g.new[j])}{old}")
        groups.append(dict(tensor=g.tensor, name=nm, dense=g.dense, elem_size=g.elem_size,
                           entries=g.count, bytes=nb))
    write_json(json_path, dict(bytes=len(data), type=p.type_name, old_values=p.has_old, seq=p.seq,
                               compression=COMP_NAMES[p.compression], base=p.base_hash.hex(),
                               target=p.target_hash.hex(), entries=p.entries, key_id=kid,
                               tag=tag, groups=groups))


@patch.command("verify")
@click.argument("patch_file", type=click.Path(exists=True, dir_okay=False))
@key_option(required=True)
@click.option("--base", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The deployed model (.tflite) the patch must apply to.")
@click.option("--last-seq", type=int, default=None,
              help="The device's last applied sequence number (checks against replay).")
def verify_cmd(patch_file, key_path, base, last_seq):
    """Check a patch as the device will: tag, digest, structure, sequence, base hash, old
    values, and that applying gives the target hash. Exit 0 only if all pass."""
    from toolchain.patch.apply import apply_in_place
    from toolchain.patch.format import decode_patch
    from toolchain.patch.store import weight_store
    data = _read_patch(patch_file)
    key = _key(key_path)
    p = decode_patch(data, key)
    st = weight_store(_load_model(base))
    # as a device does: its last applied sequence starts at 0, so a patch needs seq >= 1
    st.seq = max(p.seq - 1, 0) if last_seq is None else last_seq
    apply_in_place(st, data, key)
    click.echo(f"patch {patch_file}: OK (tag, digest, sequence {p.seq}"
               + (f" > {last_seq}" if last_seq is not None else "") +
               f", base {p.base_hash.hex()[:16]}, {p.entries:,} old values, target "
               f"{p.target_hash.hex()[:16]})")


@patch.command("apply")
@click.argument("patch_file", type=click.Path(exists=True, dir_okay=False))
@key_option(required=True)
@click.option("--base", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--last-seq", type=int, default=0, show_default=True)
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="New model (.tflite).")
def apply_cmd(patch_file, key_path, base, last_seq, out):
    """Apply a patch on the host (the reference of what the device does)."""
    from toolchain.patch.apply import apply_patch
    from toolchain.patch.store import store_hash
    g = apply_patch(_load_model(base), _read_patch(patch_file), _key(key_path), last_seq=last_seq)
    _save_model(g, out)
    click.echo(f"{out}: model {store_hash(g)}")


@patch.command("train")
@click.argument("model", type=click.Path(exists=True))
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False),
              help=".npz with x (float inputs, NHWC like the model input) and y (int labels).")
@key_option(required=True)
@click.option("--seq", type=click.IntRange(1, 2**32 - 1), required=True)
@click.option("--budget", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Fraction of conv/fc weights that may change.")
@click.option("--lambda", "lam", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="DPU metric weight of the global contribution.")
@click.option("--epochs", type=int, default=20, show_default=True, help="Full-training epochs.")
@click.option("--finetune-epochs", type=int, default=20, show_default=True)
@click.option("--selection", type=click.Choice(["dpu", "global", "random"]), default="dpu",
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-old", "no_old", is_flag=True,
              help="DELTA without old values: ~1/3 smaller, roll-forward only (no rollback "
                   "from the patch; the base is still verified by its store hash).")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Patch file.")
@click.option("--out-model", type=click.Path(dir_okay=False), help="New model (.tflite).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Emit the patch even when the updated model "
              "scores worse than the deployed one on the data (int8, reference interpreter).")
def train_cmd(model, data, key_path, seq, budget, lam, epochs, finetune_epochs, selection, seed,
              no_old, out, out_model, json_path, force):
    """Deep partial updating: train from the deployed MODEL on new data, keep the top
    budget of conv/fc weights by the DPU metric, fine-tune them, emit the patch."""
    from converters.npz import read_xy_npz
    from toolchain.patch.dpu import dpu_update
    from toolchain.patch.errors import PatchError
    _check_patch_outputs(out, out_model, json_path)
    _load_model(model)                  # refuses a subnet export before any work
    x, y = read_xy_npz(data, "training data", PatchError,
                       hint="; save it with np.savez(path, x=inputs, y=labels)")
    if y is None:
        raise PatchError(f"training data {data} has no labels 'y'; DPU training needs them")
    g = _load_model(model)
    # the data must fit the deployed model: classes, then shape (NCHW from PyTorch is
    # transposed to the model's NHWC), so no patch comes from data it cannot learn from
    from converters.npz import check_xy
    from toolchain.hil.data import DataError, to_model_layout
    n_cls = int(g.t(g.outputs[0]).shape[-1])
    x, y = check_xy(x, y, "training data", PatchError, num_classes=n_cls, path=str(data))
    try:
        x, _ = to_model_layout(x, g.t(g.inputs[0]).shape[1:],
                               source_layout=g.meta.get("input_layouts", {}).get(g.inputs[0]))
    except DataError as e:
        raise PatchError(f"training data {data}: {e}") from None
    upd = dpu_update(g, x, y, budget=budget, lam=lam, epochs=epochs,
                     finetune_epochs=finetune_epochs, selection=selection, seed=seed)
    from toolchain.patch.make import build_patch
    res = build_patch(g, upd.new_q, _key(key_path), seq, with_old=not no_old)
    # never ship a regression by accident: both models, int8 as the device runs them
    from converters.quantize import run_int8
    acc_old = float((run_int8(g, x).argmax(-1).reshape(-1) == y).mean())
    acc_new = float((run_int8(res.graph, x).argmax(-1).reshape(-1) == y).mean())
    upd.stats.update(int8_accuracy_deployed=acc_old, int8_accuracy_updated=acc_new)
    click.echo(f"int8 accuracy on {data}: deployed {100 * acc_old:.2f} %, updated "
               f"{100 * acc_new:.2f} %")
    if acc_new < acc_old and not force:
        raise PatchError(f"the updated model scores {100 * acc_new:.2f} % on {data}, the "
                         f"deployed one {100 * acc_old:.2f} %: no patch written (--force to "
                         "emit it anyway)")
    res.info.update(budget=budget, selected=upd.selected, selection=selection)
    _write_patch(res, out, out_model, json_path, extra=dict(train=upd.stats))


@patch.command("bench")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the results as JSON (default: bench-results/patch_bench.json).")
@click.option("--quick", is_flag=True, help="One seed, one round, fewer epochs and methods "
                                            "(a smoke run, < 30 s).")
@click.option("--seeds", default=None, help="Comma-separated seeds (default 0,1,2; --quick: 0).")
@click.option("--seed", type=int, default=None, help="One seed (same as --seeds N).")
@click.option("--model", type=click.Choice(["cnn-m", "cnn-s"]), default="cnn-m", show_default=True,
              help="cnn-m: 57k-weight digits CNN; cnn-s: the 2k-weight one.")
@click.option("--scenario", type=click.Choice(["growth", "classes"]), default="growth",
              show_default=True, help="growth: more data per round; classes: class-incremental.")
@click.option("--device", is_flag=True, help="Also measure streaming + apply on the host board "
                                             "(direct and paced at 115200 baud) and QEMU.")
def bench_cmd(json_path, quick, seeds, seed, model, scenario, device):
    """Partial (DPU at 1/3/5/10 %) vs full vs random updates on a digits CNN over rounds of
    new data: int8 accuracy (mean ± std over seeds), patch bytes vs the FULL patch, streaming
    time at 115200 baud."""
    from toolchain.patch.bench import run_bench
    run_bench(json_path=json_path, quick=quick, seed=seed, echo=click.echo, scenario=scenario,
              device=device, model=model,
              seeds=None if seeds is None else [int(s) for s in seeds.split(",") if s.strip()])


COMMANDS = (patch,)   # the device subcommands (patch_device.py) join in __init__.py

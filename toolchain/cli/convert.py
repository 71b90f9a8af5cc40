"""`mcu convert`: model files to int8 .tflite and C arrays."""
import click

from toolchain.cli.common import write_json


@click.command()
@click.argument("model", type=click.Path())
@click.option("--calib", type=click.Path(dir_okay=False),
              help="Calibration inputs: .npz with array 'x' (N, ...) in the model's input layout "
                   "as you know it (NCHW for PyTorch/ONNX image models, (N, C, L) for 1-D "
                   "conv nets; it is transposed to NHWC, or N,1,L,C, internally), optional "
                   "labels 'y'. Required for float models.")
@click.option("--method", type=click.Choice(["minmax", "percentile", "mse"]), default="minmax",
              show_default=True, help="How activation ranges are chosen from the calibration data.")
@click.option("--percentile", type=float, default=99.99, show_default=True,
              help="Percentile for --method percentile.")
@click.option("--per-channel-fc", is_flag=True,
              help="Per-channel weights for FULLY_CONNECTED too (default: per tensor, as TFLite).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Output directory [default: <model name>_int8].")
@click.option("--name", default="model_data", show_default=True,
              help="C array name (and file names of the .c/.h).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write the summary as JSON.")
def convert(model, calib, method, percentile, per_channel_fc, out_dir, name, json_path):
    """Convert MODEL (.onnx, .pt2, .tflite) to an int8 .tflite plus C arrays.
    (MODEL a subnet export directory, from mcu subnets export/train: print its levels'
    parameters and bytes.)

    Float models are quantized post-training (int8 per-channel weights, int8
    activations, TFLite int8 spec) with --calib data; int8 .tflite models pass
    through. Writes model.tflite, <name>.c and <name>.h into the output
    directory (all or nothing) and prints a summary: ops, parameters,
    quantization, model hash, float vs int8 agreement on the calibration set."""
    import re
    from converters.convert import convert as run_convert, format_summary
    from toolchain.errors import ConvertError
    from toolchain.subnets.export import format_manifest, is_export, load_export
    if is_export(model):            # a subnet export: per-level parameters and bytes
        ex = load_export(model)     # (reads and checks every level against the store)
        click.echo(format_manifest(ex.manifest))
        write_json(json_path, ex.manifest)
        return
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConvertError(f"--name '{name}' is not a valid C identifier")
    result = run_convert(model, calib=calib, method=method, out_dir=out_dir, name=name,
                         percentile=percentile, per_channel_fc=per_channel_fc,
                         log=lambda m: click.echo(m, err=True))
    click.echo(format_summary(result))
    write_json(json_path, result)


COMMANDS = (convert,)

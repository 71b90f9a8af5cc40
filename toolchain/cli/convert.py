"""`mcu convert`: model files to int8 .tflite and C arrays."""
import click

from toolchain.cli.common import (check_outputs, is_snn, refuse_snn_options, snn_options,
                                   snn_opts, write_json)


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
@click.option("--activations", type=click.Choice(["int8", "int16"]), default="int8",
              show_default=True,
              help="Activation type: int8, or int16 with int8 weights and int64 biases "
                   "(TFLite's 16x8 mode: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, "
                   "pools, SOFTMAX, RESHAPE; other ops are refused).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Output directory [default: <model name>_int8, _int16 with "
                   "--activations int16].")
@click.option("--name", default=None,
              help="C array name (and file names of the .c/.h) [default: model_data; "
                   "snn_model for a spiking model].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write the summary as JSON.")
@snn_options
def convert(model, calib, method, percentile, per_channel_fc, activations, out_dir, name,
            json_path, **kw):
    """Convert MODEL (.onnx, .pt2, .tflite) to an int8 .tflite plus C arrays, or a
    spiking MODEL.nir to fixed point plus C arrays of its parameters. (MODEL a subnet
    export directory, from mcu subnets export/train: print its levels' parameters and
    bytes.)

    Float models are quantized post-training (int8 per-channel weights, int8
    activations, TFLite int8 spec) with --calib data; int8 .tflite models pass
    through. Writes model.tflite, <name>.c and <name>.h into the output
    directory (all or nothing) and prints a summary: ops, parameters,
    quantization, model hash, float vs int8 agreement on the calibration set.

    MODEL.nir (spiking; --timesteps T, --calib required): int8 weights per channel,
    int16/int32 neuron state, Q15 decays (docs/snn.md). Prints the layers and their
    quantized parameters, fixed vs float spike counts and accuracies on the calibration
    data and warnings; writes <name>.h (layout and semantics) and <name>.c."""
    import re
    from toolchain.errors import ConvertError
    from toolchain.subnets.export import format_manifest, is_export, load_export
    if is_export(model):            # a subnet export: per-level parameters and bytes
        ex = load_export(model)     # (reads and checks every level against the store)
        click.echo(format_manifest(ex.manifest))
        write_json(json_path, ex.manifest)
        return
    name = name or ("snn_model" if is_snn(model) else "model_data")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConvertError(f"--name '{name}' is not a valid C identifier")
    check_outputs(json_path)                  # before any work: all or nothing
    if is_snn(model):
        from toolchain.snn.pipeline import convert_snn, format_summary as snn_summary
        result = convert_snn(model, calib, snn_opts(kw), out_dir=out_dir, name=name,
                             log=lambda m: click.echo(m, err=True))
        click.echo(snn_summary(result))
        write_json(json_path, result)
        return
    refuse_snn_options(model, kw)
    if activations != "int8" and is_snn(model):  # pragma: no cover - is_snn returned above
        raise ConvertError("--activations applies to int8 models, not spiking ones")
    from converters.convert import convert as run_convert, format_summary
    result = run_convert(model, calib=calib, method=method, out_dir=out_dir, name=name,
                         percentile=percentile, per_channel_fc=per_channel_fc,
                         log=lambda m: click.echo(m, err=True), activations=activations)
    click.echo(format_summary(result))
    write_json(json_path, result)


COMMANDS = (convert,)

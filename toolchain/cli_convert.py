"""`mcu convert`: model files to int8 .tflite and C arrays."""
from toolchain.cli import main  # noqa: F401

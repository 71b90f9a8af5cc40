"""`python -m toolchain.cli` runs the `mcu` command."""
from toolchain.cli import main

main()

"""IR -> C: memory plan, kernel parameters, generated sources.

    from toolchain.codegen import generate, firmware_sources
    res = generate(graph, "out/model", kernels="dsp")       # model.c, model_weights.c/.h
    srcs, incs, defs = firmware_sources("m.tflite", board, "build/b/model")  # build hook
"""
from toolchain.codegen.firmware import firmware_sources  # noqa: F401
from toolchain.codegen.generate import SUPPORTED_OPS, GenResult, check_graph, generate  # noqa: F401

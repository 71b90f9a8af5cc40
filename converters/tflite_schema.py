"""Shared TFLite schema access for the reader and writer: the flatbuffer object API
shipped with tflite-micro, plus the name/enum tables both directions use."""
from __future__ import annotations

import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema  # noqa: F401

FILE_IDENTIFIER = b"TFL3"

BUILTIN_NAME = {v: k for k, v in vars(schema.BuiltinOperator).items()
                if not k.startswith("_") and isinstance(v, int)}
BUILTIN_CODE = {k: v for v, k in BUILTIN_NAME.items()}
# Codes above this live only in builtin_code; deprecated_builtin_code holds 127.
PLACEHOLDER_FOR_GREATER_OP_CODES = 127

TENSOR_TYPE_TO_DTYPE = {
    schema.TensorType.FLOAT32: "float32", schema.TensorType.INT8: "int8",
    schema.TensorType.UINT8: "uint8", schema.TensorType.INT16: "int16",
    schema.TensorType.INT32: "int32", schema.TensorType.INT64: "int64",
    schema.TensorType.BOOL: "bool",
}
DTYPE_TO_TENSOR_TYPE = {v: k for k, v in TENSOR_TYPE_TO_DTYPE.items()}

ACT_TO_NAME = {
    schema.ActivationFunctionType.NONE: "NONE",
    schema.ActivationFunctionType.RELU: "RELU",
    schema.ActivationFunctionType.RELU6: "RELU6",
    schema.ActivationFunctionType.RELU_N1_TO_1: "RELU_N1_TO_1",
    schema.ActivationFunctionType.TANH: "TANH",
    schema.ActivationFunctionType.SIGN_BIT: "SIGN_BIT",
}
NAME_TO_ACT = {v: k for k, v in ACT_TO_NAME.items()}

PADDING_TO_NAME = {schema.Padding.SAME: "SAME", schema.Padding.VALID: "VALID"}
NAME_TO_PADDING = {v: k for k, v in PADDING_TO_NAME.items()}

NP_DTYPE = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8, "int16": np.int16,
            "int32": np.int32, "int64": np.int64, "bool": np.bool_}

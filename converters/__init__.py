"""Model front ends (ONNX, PyTorch, TFLite, NIR) into the IR, transforms, and writers."""

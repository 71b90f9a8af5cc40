"""Switchable nested row-sparse subnets (DRESS, issue #10): the packed weight
store (`store`), int8 quantization shared across levels (`quantize`) and the
numpy reference of the row-sparse kernels (`reference`)."""

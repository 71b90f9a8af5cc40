"""Switchable nested row-sparse subnets (DRESS, issue #10).

- `train`: nested row-sparse joint training from a torch module or an IR graph
  (`train_subnets` -> `SubnetResult`: per-level float IR graphs, shared orders, masks).
- `store`: per-row importance order -> nested masks and the packed store
  (`importance_order`, `nested_masks`, `level_counts`, `build_store` -> `SubnetStore`,
  `decode_level`, `byte_report`); `SubnetStore.c_arrays()` is what the C kernels
  (`firmware_templates/runtime/sparse.c`) take, `SubnetStore.bias_eff()` their
  per-level bias table.
- `quantize`: int8 weights and weight scales shared across levels, activation
  scales / biases / multipliers per level (`share_levels`, `quantize_levels`,
  `mask_float_graph`) -> per level a dense-with-zeros int8 graph and `.tflite`.
- `reference`: numpy reference of the row-sparse ops (`level_params`,
  `sparse_conv2d`, `sparse_fully_connected`), bit-exact with tflite-micro on each
  level's dense-with-zeros model and with the C kernels.
"""

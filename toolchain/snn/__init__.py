"""Spiking networks: time-step semantics (float_sim), input encodings, fixed point and
its numpy interpreter, C generation. The IR comes from converters.nir_frontend."""

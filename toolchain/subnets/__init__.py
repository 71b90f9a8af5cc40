"""Switchable nested row-sparse subnets (DRESS, issue #10): training, quantization, the
shared weight store and its reference."""

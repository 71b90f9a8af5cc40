"""mcu: deploy int8 ML models to Cortex-M microcontrollers."""
__version__ = "0.1.0"

"""Small example models and data sets used by tests, demos and hardware-in-the-loop runs."""

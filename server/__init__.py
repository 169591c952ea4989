"""colorprop inference server (ZeroMQ)."""

"""gRPC translation server over the model repository (no torch: ONNX Runtime only)."""

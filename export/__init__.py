"""Export of trained PyTorch checkpoints to ONNX graphs and a versioned model repository."""

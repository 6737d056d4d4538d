"""Training of the PyTorch translation models: data, models, search, training loop, evaluation."""

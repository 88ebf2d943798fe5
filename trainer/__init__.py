"""The trainer: manifest-driven batches (data), the decoder (model), the WSD schedule, the training loop (train),
its checkpoints and metrics log, and validation loss (evaluate)."""

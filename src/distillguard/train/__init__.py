"""Training: the knowledge-distillation loss and the single-model training loop."""

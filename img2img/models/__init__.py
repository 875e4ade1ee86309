"""Networks with their configs, the weights format, reading reference checkpoints."""

"""`img2img train` (being written)."""

"""`img2img translate` (being written)."""

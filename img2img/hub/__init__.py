"""Named models: the registry, Hugging Face specs, downloads and conversion."""

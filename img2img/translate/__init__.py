"""Translating images: the translator, engines, tiles, job planning, Ray Data."""

"""Helpers for tests, benchmarks and examples. The library itself uses only ``hold``, a test
hook that is off unless ``$IMG2IMG_TEST_HOLD`` is set (img2img.testing.hold)."""

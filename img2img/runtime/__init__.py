"""The machine: devices, the CPU class, stop requests."""

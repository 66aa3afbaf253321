"""Test setup: simulate 8 CPU devices (set before jax is imported) and keep runs deterministic."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

"""vdm.data."""

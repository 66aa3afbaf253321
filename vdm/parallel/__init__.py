"""vdm.parallel."""

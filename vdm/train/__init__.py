"""vdm.train."""

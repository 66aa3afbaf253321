"""vdm.eval."""

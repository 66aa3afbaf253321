"""vdm.post."""

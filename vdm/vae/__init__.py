"""vdm.vae."""

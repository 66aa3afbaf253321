"""Space-time diffusion transformer."""

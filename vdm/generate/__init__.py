"""Generation: noise-level matrices for each mode and the prompt -> video pipeline."""

"""Video metrics as pure functions of arrays: temporal consistency, motion, drift curves,
image quality (PSNR/SSIM), Moving-MNIST prediction scores and FVD.

Each module is small and importable alone; `fvd` is the only one that loads a network.
"""

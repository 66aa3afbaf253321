"""Temporal-consistency ablations: one change per denoiser, scored like parallel vs AR.

    python -m experiments.temporal_ablations                       # small: this CPU, ~20 min/variant
    python -m experiments.temporal_ablations --size tiny           # seconds: the smoke test
    python -m experiments.temporal_ablations --variants baseline,motion --base-workdir workdirs/spine

Each variant of `configs/temporal_ablations.py` (baseline; full 3D attention; a local temporal
window; a frame-difference consistency loss; motion supervision along the exact flow) trains a
Diffusion Forcing denoiser at equal compute on one tokenizer, VAE and dataset (the machinery of
experiments/parallel_vs_ar.py), then samples held-out prompts in parallel mode and
autoregressively (chunk 1, noisy context) at 1x-4x the training length with several seeds.
Outputs in `experiments/results/temporal_ablations/`: table.md, results.json, drift curves,
quality and speed against length, a frame grid.
"""
from __future__ import annotations

import os

from configs.temporal_ablations import VARIANTS
from experiments import parallel_vs_ar

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                      "temporal_ablations.py")


def methods_for(variants) -> tuple[parallel_vs_ar.Method, ...]:
  """Two ways to sample each variant: parallel, and autoregressive chunk 1 with noisy context."""
  return tuple(m for v in variants for m in (
      parallel_vs_ar.Method(f"{v}: parallel", v, "parallel", native=True),
      parallel_vs_ar.Method(f"{v}: AR k=1, noisy ctx", v, "autoregressive",
                            context_noise=parallel_vs_ar.CONTEXT_NOISE)))


def main(argv=None) -> int:
  parser = parallel_vs_ar.run_parser("temporal_ablations", lengths="1,2,4", description=__doc__)
  parser.add_argument("--variants", default=",".join(VARIANTS),
                      help=f"comma-separated, from {VARIANTS}; the first also builds the base")
  args = parser.parse_args(argv)
  variants = tuple(v for v in args.variants.split(",") if v)
  if not variants or not set(variants) <= set(VARIANTS):
    parser.error(f"--variants {args.variants!r}: allowed a comma-separated subset of {VARIANTS}")
  return parallel_vs_ar.run(args, parser, config_path=CONFIG, variants=variants,
                            methods=methods_for(variants))


if __name__ == "__main__":
  raise SystemExit(main())

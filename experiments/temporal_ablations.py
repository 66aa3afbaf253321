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

import argparse
import os

from configs.temporal_ablations import VARIANTS
from experiments import parallel_vs_ar
from vdm.eval.rollout import markdown_table

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                      "temporal_ablations.py")


def methods_for(variants) -> tuple[parallel_vs_ar.Method, ...]:
  """Two ways to sample each variant: parallel, and autoregressive chunk 1 with noisy context."""
  return tuple(m for v in variants for m in (
      parallel_vs_ar.Method(f"{v}: parallel", v, "parallel"),
      parallel_vs_ar.Method(f"{v}: AR k=1, noisy ctx", v, "autoregressive",
                            context_noise=parallel_vs_ar.CONTEXT_NOISE)))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--size", default="small", choices=("small", "tiny"))
  parser.add_argument("--variants", default=",".join(VARIANTS),
                      help=f"comma-separated, from {VARIANTS}; the first also builds the base")
  parser.add_argument("--workdir", default="", help="default: workdirs/temporal_ablations_<size>")
  parser.add_argument("--base-workdir", default="",
                      help="reuse this workdir's tokenizer, VAE and data (e.g. the spine's)")
  parser.add_argument("--prompts", type=int, default=8)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--lengths", default="1,2,4", help="multiples of the training length")
  parser.add_argument("--steps", type=int, default=None, help="sampling steps (model default)")
  parser.add_argument("--out", default="experiments/results/temporal_ablations")
  args = parser.parse_args(argv)
  variants = tuple(v for v in args.variants.split(",") if v)
  if not variants or not set(variants) <= set(VARIANTS):
    parser.error(f"--variants {args.variants!r}: allowed a comma-separated subset of {VARIANTS}")
  seeds = [int(s) for s in args.seeds.split(",")]
  lengths = [int(n) for n in args.lengths.split(",")]
  if args.prompts < 1 or not seeds or min(lengths) < 1:
    parser.error("--prompts must be >= 1, --seeds non-empty, --lengths >= 1")
  workdir = args.workdir or f"workdirs/temporal_ablations_{args.size}"
  models = parallel_vs_ar.train_variants(args.size, workdir, args.base_workdir,
                                         config_path=CONFIG, variants=variants)
  evaluation = parallel_vs_ar.evaluate(models, prompts=args.prompts, seeds=seeds,
                                       lengths=lengths, steps=args.steps,
                                       methods=methods_for(variants))
  parallel_vs_ar.write_outputs(evaluation, args.out, args=vars(args))
  print(markdown_table(parallel_vs_ar.summarize(evaluation)))
  print(f"wrote {args.out}/")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

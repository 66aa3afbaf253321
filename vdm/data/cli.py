"""`vdm data import DIR --out NAME` and `vdm data prepare [ARG]` (see configs/data_scenes.py)."""
from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_DATA_DIR = os.environ.get("VDM_DATA_DIR", "data")
MAX_SHORT_SIDE = 2160  # 4K's short side: beyond it every clip's frames only get bigger


def add_data_arguments(subparsers) -> argparse.ArgumentParser:
  """Adds the `data` command (with `import` and `prepare`) to an argparse subparsers object."""
  parser = subparsers.add_parser("data", help="build datasets: import your videos, prepare the "
                                              "synthetic benchmark")
  sub = parser.add_subparsers(dest="data_command", required=True)
  p = sub.add_parser("import", help="turn a folder of videos into a TFDS dataset")
  p.add_argument("folder", metavar="DIR", help="folder of .mp4/.webm/.avi/.mov/.mkv/.m4v/.gif "
                                               "files (captions from sidecar .txt or file names)")
  p.add_argument("--out", required=True, metavar="NAME", help="dataset name (letters, digits, _)")
  p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where TFDS datasets live")
  p.add_argument("--short-side", type=int, default=64, help="pixels of each clip's short side")
  p.add_argument("--fps", type=int, default=8, help="frame rate clips are resampled to")
  p.add_argument("--lengths", default="17,33",  # = importer.ImportOptions.lengths
                 help="duration buckets in frames (1 + 2k, what `vdm train` takes), e.g. 17,33")
  p.add_argument("--aspects", default="1:1,16:9,9:16", help="aspect buckets")
  p = sub.add_parser("prepare", help="generate a synthetic dataset (configs/data_scenes.py)")
  p.add_argument("arg", nargs="?", default="",
                 help="configs/data_scenes.py argument: '', wide, tall, tiny, moving_mnist")
  p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where TFDS datasets live")
  parser.set_defaults(func=run_data_command)
  return parser


def _ints(text: str, flag: str) -> tuple[int, ...]:
  try:
    values = tuple(int(v) for v in text.split(",") if v.strip())
  except ValueError:
    values = ()
  if not values or min(values) < 2:
    raise ValueError(f"{flag} must be comma-separated ints >= 2, got {text!r}")
  return values


def run_data_command(args: argparse.Namespace) -> int:
  """Runs `vdm data ...`; returns the exit code (0 ok, 2 bad arguments or input)."""
  from vdm.cli_common import check_output_path, error_line
  try:
    check_output_path(args.data_dir, "--data-dir", folder=True)
    if args.data_command == "import":
      from vdm.data import importer
      from vdm.data.aspect_ratios import ASPECTS, aspect_size
      aspects = tuple(a.strip() for a in args.aspects.split(",") if a.strip())
      if not aspects:
        raise ValueError(f"--aspects must name at least one of "
                         f"{sorted(ASPECTS)}, got {args.aspects!r}")
      for a in aspects:
        try:
          aspect_size(a, 8)  # validates the name
        except ValueError as e:
          raise ValueError(f"--aspects: {e}") from None
      if not 8 <= args.short_side <= MAX_SHORT_SIDE:
        raise ValueError(f"--short-side must be an integer in [8, {MAX_SHORT_SIDE}], got "
                         f"{args.short_side}")
      if not 1 <= args.fps <= 240:
        raise ValueError(f"--fps must be an integer in [1, 240], got {args.fps}")
      options = importer.ImportOptions(short_side=args.short_side, fps=args.fps,
                                       lengths=_ints(args.lengths, "--lengths"), aspects=aspects)
      report = importer.import_folder(args.folder, args.out, args.data_dir, options)
      print(f"imported {len(report['imported'])} clips into {report['dataset_dir']} "
            f"(splits {json.dumps(report['splits'])}); skipped {len(report['skipped'])}:")
      for item in report["skipped"]:
        print(f"  {item['path']}: {item['reason']}")
      print(f"report: {importer.staging_dir(args.data_dir, args.out)}/report.json")
      return 0
    import importlib.util
    from vdm.data import kinds
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location(
        "data_scenes", os.path.join(root, "configs", "data_scenes.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = module.get_config(args.arg).data
    builder = kinds.build(data, args.data_dir)
    print(f"{builder.data_path}: " + ", ".join(
        f"{s} {i.num_examples}" for s, i in builder.info.splits.items()))
    return 0
  except (ValueError, OSError) as e:
    print(error_line(f"data {args.data_command}", e), file=sys.stderr)
    return 2

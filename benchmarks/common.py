"""Machine description and result writing shared by every benchmark."""
from __future__ import annotations

import json
import os
import platform
import time

import jax


def machine() -> dict:
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  from vdm.provenance import git_commit
  return dict(cpu=cpu, cores=os.cpu_count(), devices=[str(d) for d in jax.devices()],
              jax=jax.__version__, python=platform.python_version(), git_commit=git_commit(),
              date=time.strftime("%Y-%m-%d %H:%M:%S"))


def timed(fn, repeats: int) -> tuple[float, list[float]]:
  """Runs fn once (compile + first run, reported separately), then `repeats` timed runs."""
  t0 = time.perf_counter()
  fn()
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return first, times


def write(name: str, rows: list[dict], extra: dict) -> str:
  # VDM_BENCH_DIR lets smoke tests write elsewhere than the committed results.
  out_dir = os.environ.get("VDM_BENCH_DIR") or os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results")
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f"{name}.json")
  with open(path, "w") as f:
    json.dump(dict(benchmark=name, machine=machine(), rows=rows, **extra), f, indent=2)
  keys = list(rows[0])
  print("| " + " | ".join(keys) + " |")
  print("|" + "---|" * len(keys))
  for row in rows:
    print("| " + " | ".join(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k])
                            for k in keys) + " |")
  print(f"wrote {path}")
  return path

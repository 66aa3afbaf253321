"""Benchmarks are not tests: this only runs each at a toy size so it cannot rot."""
import json
import os

import pytest

from benchmarks import autoregressive, data, frames, gpu_dit, post, train_step, vae_decode
from benchmarks.flops import dit_forward_flops


@pytest.fixture(autouse=True)
def bench_dir(tmp_path, monkeypatch):
  monkeypatch.setenv("VDM_BENCH_DIR", str(tmp_path))
  return tmp_path


def test_train_step_benchmark_runs(bench_dir):
  train_step.run(["--tiny", "--repeats", "1", "--curve-steps", "2"])
  result = json.load(open(bench_dir / "train_step_tiny.json"))
  row = result["rows"][0]
  assert row["gflop_per_step"] > 0 and row["peak_gflops"] > 0 and "cpu" in result["machine"]


def test_scan_layers_benchmark_runs(bench_dir):
  from benchmarks import scan_layers
  scan_layers.run(["--tiny", "--depths", "1,2", "--repeats", "1"])
  rows = json.load(open(bench_dir / "scan_layers_tiny.json"))["rows"]
  assert [(r["depth"], r["layers"]) for r in rows] == [
      (1, "unrolled"), (1, "scanned"), (2, "unrolled"), (2, "scanned")]


def test_post_benchmark_runs(bench_dir):
  post.run(["--tiny", "--repeats", "1", "--frames-small", "2", "--frames-large", "2"])
  assert json.load(open(bench_dir / "post_tiny.json"))["rows"]


def test_flop_count_matches_a_hand_count():
  """One block, one frame, one token, no text: linear layers + modulation + embeddings only."""
  d = 8
  flops = dit_forward_flops(batch=1, frames=1, tokens_per_frame=1, text_tokens=0, width=d,
                            depth=1, mlp_ratio=4.0, patch_dim=4)
  linear = 2 * (8 * d * d + 2 * d * d + 2 * d * 4 * d)   # spatial+temporal attn, cross q/out, mlp
  scores = 2 * 2 * d * 2                                  # one 1x1 spatial and temporal score
  assert flops == linear + 2 * d * 9 * d + scores + 2 * 2 * 4 * d


def test_data_benchmark_runs(bench_dir):
  data.run(["--clips", "2", "--repeats", "1", "--batch-size", "2"])
  rows = json.load(open(bench_dir / "data.json"))["rows"]
  assert len(rows) == 3 and all(r["load_clips_s"] > 0 for r in rows)


def test_gpu_benchmark_runs_at_toy_size_on_cpu(bench_dir):
  gpu_dit.run(["--tiny", "--repeats", "1", "--remat", "dots"])
  rows = json.load(open(bench_dir / "gpu_dit_tiny.json"))["rows"]
  assert [r["what"].split()[0] for r in rows] == ["train", "sampling"]
  assert all(r["tflops"] > 0 for r in rows)


def test_autoregressive_benchmark_runs(bench_dir):
  autoregressive.run(["--lengths", "1,2", "--steps", "2", "--repeats", "1"])
  rows = json.load(open(bench_dir / "autoregressive.json"))["rows"]
  assert [r["frames"] for r in rows] == [9, 17]
  assert all(r["cache_s_per_chunk"] > 0 and r["no_cache_s_per_chunk"] > 0 for r in rows)


def test_frames_benchmark_runs(bench_dir):
  frames.run(["--tiny", "--frames", "2,4", "--repeats", "1"])
  rows = json.load(open(bench_dir / "frames_tiny.json"))["rows"]
  assert [(r["attention"], r["frames"]) for r in rows] == [
      ("factorized", 2), ("factorized", 4), ("full", 2), ("full", 4)]
  # Memory XLA plans grows with the clip.
  assert rows[1]["train_peak_mb"] > rows[0]["train_peak_mb"] > 0


def test_vae_decode_benchmark_runs(bench_dir):
  vae_decode.run(["--tiny", "--frames", "9,65", "--size", "16", "--repeats", "1"])
  rows = json.load(open(bench_dir / "vae_decode_tiny.json"))["rows"]
  assert rows[1]["whole_peak_mb"] > rows[0]["whole_peak_mb"]
  assert rows[1]["chunked_peak_mb"] < rows[1]["whole_peak_mb"]


def test_wan_benchmark_runs_at_toy_size_on_cpu(bench_dir):
  """benchmarks/wan.py (Wan2.1-T2V-1.3B, random bf16 weights, on a lent GPU) at the tiny size."""
  from benchmarks import wan
  wan.run(["--tiny", "--repeats", "1"])
  result = json.load(open(bench_dir / "wan_tiny.json"))
  video, chunk = result["rows"]
  assert video["best_s"] > 0 and chunk["median_s"] > 0 and result["ar_frames_per_second"] > 0
  assert result["attention_kernel"] == "xla" and result["weights"] == "random, bf16"


def test_sequence_parallel_benchmark_runs(bench_dir):
  from benchmarks import sequence_parallel
  sequence_parallel.run(["--tiny", "--repeats", "1"])
  rows = json.load(open(bench_dir / "sequence_parallel_tiny.json"))["rows"]
  assert [r["devices"] for r in rows] == [1, 8, 8]
  assert all(r["temp_mib"] > 0 and r["best_s"] > 0 for r in rows)


def test_train_scale_benchmark_runs_at_toy_size(bench_dir):
  from benchmarks import train_scale
  train_scale.run(["--tiny", "--repeats", "1"])
  row = json.load(open(bench_dir / "train_scale_tiny.json"))["rows"][0]
  assert row["tflops"] > 0 and 0 < row["mfu"] and row["peak_mem_gib"] > 0


def test_peers_benchmark_runs_at_toy_size(bench_dir):
  pytest.importorskip("diffusers")  # the optional .[peers] extra
  from benchmarks import peers
  peers.run(["--tiny", "--repeats", "1", "--dtypes", "float32"])
  result = json.load(open(bench_dir / "peers_tiny.json"))
  assert {r["model"] for r in result["rows"]} == {
      "Latte float32", "Wan float32", "vdm factorized float32", "vdm full float32"}
  assert all(r["gflop_per_step"] > 0 and r["gflops_best"] > 0 for r in result["rows"])
  assert set(result["ratios"]) == {"vdm factorized / Latte, float32", "vdm full / Wan, float32"}


def test_stream_memory_benchmark_runs(bench_dir):
  from benchmarks import stream_memory
  stream_memory.run(["--seconds", "0.5,2", "--modes", "rolling", "--steps", "2"])
  rows = json.load(open(bench_dir / "stream_memory.json"))["rows"]
  assert [(r["mode"], r["seconds"]) for r in rows] == [("rolling", 0.5), ("rolling", 2.0)]
  assert all(r["peak_rss_mib"] > 50 and r["file_kib"] > 0 for r in rows)


def test_train_cost_benchmark_runs(bench_dir, tmp_path):
  from benchmarks import train_cost
  from vdm.config import load_config
  from vdm.models import build_vae, save_params
  vae_dir = tmp_path / "vae_model"  # a tiny VAE in a model directory, as vae.init_from wants
  os.makedirs(vae_dir)
  save_params(build_vae(load_config("configs/spine.py:tiny")), str(vae_dir / "vae"))
  train_cost.run(["--config", "configs/spine.py:tiny", "--vae", str(vae_dir), "--steps", "3",
                  "--log-every", "1", "--num-train", "8", "--dataset-size", "16",
                  "--steps-to-target", "10", "--repeats", "1"])
  rows = json.load(open(bench_dir / "train_cost.json"))["rows"]
  assert [r["variant"].split(":")[0] for r in rows] == ["before", "bf16 matmuls", "latent cache",
                                                        "after"]
  assert all(r["s_per_step"] > 0 and r["to_target_min"] > 0 for r in rows)
  assert rows[0]["cache_ms_per_clip"] == 0 < rows[2]["cache_ms_per_clip"]

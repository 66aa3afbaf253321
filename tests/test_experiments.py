"""The experiment scripts run end to end at tiny size (their full runs are in README)."""
import json
import os

import pytest


def test_temporal_ablations_run_end_to_end(tmp_path):
  from experiments import temporal_ablations
  os.environ["VDM_NO_PROGRESS"] = "1"
  out = tmp_path / "out"
  assert temporal_ablations.main(
      ["--size", "tiny", "--variants", "motion", "--prompts", "1", "--seeds", "0",
       "--train-seeds", "0,1", "--lengths", "1", "--steps", "2", "--workdir",
       str(tmp_path / "w"), "--out", str(out)]) == 0
  results = json.load(open(out / "results.json"))
  assert set(results["summary"]) == {"motion: parallel @ 1x", "motion: AR k=1, noisy ctx @ 1x"}
  # two training seeds x one sampling seed: two per-seed means behind every mean +- std
  assert len(results["summary"]["motion: parallel @ 1x"]["object_ok"]["per_seed"]) == 2
  gate = results["gate"]["motion"]
  assert gate["method"] == "motion: parallel" and len(gate["direction"]) == 2
  assert gate["passed"] == all(a >= 0.8 for a in gate["direction"])
  table = (out / "table.md").read_text()
  assert table.startswith("| variant | native mode |")
  if not gate["passed"]:  # a tiny model has not learned directions: marked, not compared
    assert "motion: parallel (not learned)" in table
  seed1 = json.load(open(tmp_path / "w" / "motion_seed1" / "model" / "config.json"))
  assert seed1["seed"] == 1
  for name in ("table.md", "frames.png", "drift_colour_error.png"):
    assert (out / name).exists()
  motion = json.load(open(tmp_path / "w" / "motion" / "model" / "config.json"))
  assert motion["diffusion"]["motion_supervision_weight"] == 1.0
  # Variants take the tokenizer and VAE of the shared base: only the denoiser differs.
  assert open(tmp_path / "w" / "motion" / "tokenizer.model", "rb").read() == open(
      tmp_path / "w" / "base" / "tokenizer.model", "rb").read()


def test_temporal_ablations_reject_unknown_variants():
  from experiments import temporal_ablations
  with pytest.raises(SystemExit):
    temporal_ablations.main(["--variants", "baseline,bogus"])

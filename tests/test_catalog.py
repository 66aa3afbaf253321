"""`vdm models`: every model directory and named config, with sizes that are the built models'
parameter counts, the modes each was trained for, and features from the registry."""
import json
import os

import pytest

from vdm import catalog, cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shipped_checkpoints_are_listed_with_their_real_sizes():
  from vdm.models import count_params, load_model_dir
  from vdm.post.sr import load as load_upscaler
  entries = {os.path.basename(e["path"]): e for e in catalog.list_models(
      [os.path.join(ROOT, "checkpoints")], configs=False)}
  assert set(entries) == {"spine", "spine_forcing", "sr_x2", "sr_x4"}
  for name in ("spine", "spine_forcing"):
    denoiser = load_model_dir(os.path.join(ROOT, "checkpoints", name))[3]
    assert entries[name]["params"] == count_params(denoiser)
    assert entries[name]["resolution"] == "32px 1:1"
  assert entries["sr_x2"]["params"] == count_params(
      load_upscaler(os.path.join(ROOT, "checkpoints", "sr_x2")))
  # One shared level per clip in training: parallel only; Diffusion Forcing: every mode it runs.
  assert entries["spine"]["trained_for"] == ["parallel"]
  assert entries["spine_forcing"]["trained_for"] == entries["spine_forcing"]["modes"]
  assert {"parallel", "autoregressive", "rolling"} <= set(entries["spine"]["modes"])
  assert entries["spine"]["features"] == dict(audio=False, control=False, few_step=False)


def test_named_configs_are_every_name_a_config_file_lists():
  specs = catalog.named_configs()
  assert "configs/spine.py" in specs and "configs/spine.py:tiny" in specs
  from configs import model_sizes, temporal_ablations
  for name in model_sizes.SIZES:
    assert f"configs/model_sizes.py:{name}" in specs
  for name in temporal_ablations.VARIANTS:
    assert f"configs/temporal_ablations.py:{name}" in specs
  assert not any(s.startswith(("configs/data_scenes.py", "configs/folder_t2v.py")) for s in specs)
  entry = catalog.describe_config("configs/model_sizes.py:wan1.3b")
  from vdm.config import load_config
  from vdm.models import denoiser_param_count
  config = load_config(os.path.join(ROOT, "configs/model_sizes.py:wan1.3b"))
  assert entry["params"] == denoiser_param_count(config, config.text.vocab_size) > 2e9


def test_a_registered_feature_is_read_from_each_config():
  catalog.register_feature("deep", "more than one DiT block", lambda c: c.dit.depth > 1)
  try:
    assert catalog.describe_config("configs/spine.py")["features"]["deep"] is True
    assert catalog.describe_config("configs/spine.py:tiny")["features"]["deep"] is False
  finally:
    del catalog.FEATURES["deep"]


def test_a_damaged_directory_is_listed_with_its_error(tmp_path):
  (tmp_path / "broken").mkdir()
  (tmp_path / "broken" / "config.json").write_text("{not json")
  (entry,) = catalog.list_models([str(tmp_path)], configs=False)
  assert entry["path"].endswith("broken") and "error" in entry


def test_cli_models_prints_a_table_and_json(capsys, monkeypatch):
  monkeypatch.chdir(ROOT)
  assert cli.main(["models", "--checkpoint", "checkpoints", "--no-configs"]) == 0
  table = capsys.readouterr().out
  assert "checkpoints/spine_forcing" in table and "4.88M" in table and "audio:" in table
  assert cli.main(["models", "--checkpoint", "checkpoints/spine", "--json", "--no-configs"]) == 0
  (entry,) = json.loads(capsys.readouterr().out)
  assert entry["path"] == "checkpoints/spine" and entry["sample"]["steps"] == 25


def test_cli_models_names_a_missing_checkpoint(capsys):
  assert cli.main(["models", "--checkpoint", "/nonexistent/models"]) == 2
  assert capsys.readouterr().err.strip() == (
      "vdm models: error: --checkpoint '/nonexistent/models': no such directory")


@pytest.mark.parametrize("argv, message", [
    (["ui", "--checkpoint", "/nonexistent/models"], "--checkpoint '/nonexistent/models'"),
    (["ui", "--checkpoint", "checkpoints/sr_x2"], "no text-to-video model"),
    (["ui", "--checkpoint", "checkpoints/spine", "--port", "70000"], "--port 70000"),
    (["ui", "--checkpoint", "checkpoints/spine", "--queue", "0"], "--queue 0"),
])
def test_cli_ui_refuses_bad_flags_with_one_line(argv, message, capsys, monkeypatch, tmp_path):
  monkeypatch.chdir(ROOT)
  assert cli.main(argv + ["--out", str(tmp_path / "ui")]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("vdm ui: error:") and message in err and "\n" not in err

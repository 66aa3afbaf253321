"""The config schema: every field declared once and valid at its default, `upgrade` of configs
written before a field existed, and an old workdir that resumes bit for bit."""
import json
import os
import shutil

import ml_collections
import numpy as np
import pytest

from vdm import config as vdm_config
from vdm.config import ConfigError, defaults, describe, load_config, upgrade, validate
from vdm.config.fields import walk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


@pytest.mark.parametrize("task", sorted(vdm_config.TASKS))
def test_every_field_has_a_doc_and_a_default_it_allows(task):
  schema = vdm_config.TASKS[task][0]
  for name, field in walk(schema):
    assert field.doc.strip(), name
    if field.check is not None:
      assert field.check.ok(field.default), (name, field.default, str(field.check.allowed))
  validate(defaults(task))  # the defaults are a valid run (for t2v: the spine)


def _flat(d, prefix=""):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from _flat(v, prefix + k + ".")
    else:
      yield prefix + k, v


# Configs written before fields existed: the shipped t2v models, and the upscaler shipped before
# the `degrade` section (its config.json, kept as a fixture when the upscalers were retrained).
OLD_CONFIGS = {"spine": os.path.join(ROOT, "checkpoints", "spine", "config.json"),
               "spine_forcing": os.path.join(ROOT, "checkpoints", "spine_forcing", "config.json"),
               "sr_x2 before degrade": os.path.join(FIXTURES, "sr_x2_config_before_degrade.json")}


@pytest.mark.parametrize("name", sorted(OLD_CONFIGS))
def test_old_model_dirs_predate_fields_and_upgrade_keeps_what_they_have(name):
  """These model directories were written before several fields existed (so the golden
  samples, tests/test_golden.py, also check that old model directories load unchanged)."""
  with open(OLD_CONFIGS[name]) as f:
    stored = json.load(f)
  config = upgrade(ml_collections.ConfigDict(stored))
  validate(config)
  schema = vdm_config.schema_of(config)
  declared = {n for n, _ in walk(schema)}
  had = dict(_flat(stored))
  assert declared - set(had), "no field was missing: this directory does not test upgrade"
  now = dict(_flat(json.loads(config.to_json())))
  assert {k: now[k] for k in had} == had  # what was stored is kept as it was
  assert set(now) == declared


def test_legacy_value_differs_from_the_default_where_declared():
  """A config without the upscaler's loss section trained without those terms (legacy 0), though
  new configs get them by default."""
  old = ml_collections.ConfigDict(json.load(open(OLD_CONFIGS["sr_x2 before degrade"])))
  del old["loss"]
  assert upgrade(old).loss.to_dict() == dict(temporal_weight=0.0, input_noise=0.0)
  assert defaults("sr").loss.temporal_weight == 1.0
  # Without the degrade section it trained on bicubic downscales alone.
  degrade = upgrade(old).degrade
  assert tuple(degrade.kernels) == ("bicubic",) and degrade.blur == degrade.jpeg == 0.0
  assert tuple(defaults("sr").degrade.kernels) != ("bicubic",)


def test_unknown_fields_in_a_config_file_are_refused(tmp_path):
  path = tmp_path / "typo.py"
  path.write_text("from configs import spine\n\ndef get_config(arg=None):\n"
                  "  config = spine.get_config('tiny')\n  config.dit.widht = 64\n  return config\n")
  with pytest.raises(ConfigError, match=r"dit\.widht is unknown"):
    load_config(str(path))


def test_set_reaches_a_field_the_config_file_does_not_name():
  # configs/moving_mnist.py never mentions dit.position: it comes from the schema.
  assert load_config("configs/moving_mnist.py:tiny", ["dit.position='rope3d'"]).dit.position == \
      "rope3d"


def test_describe_lists_every_field_with_its_doc():
  config = load_config("configs/moving_mnist.py:tiny")
  text = describe(config)
  for name, field in walk(vdm_config.schema_of(config)):
    assert f"\n{name} = " in "\n" + text, name
  assert "dit.patch = 2  [default 2]" not in text and "data.frames = 4  [default 9]" in text


def test_config_show_command(capsys):
  from vdm import cli
  assert cli.main(["config", "show", "--config", "configs/spine.py:tiny"]) == 0
  out = capsys.readouterr().out
  assert "sample.max_stream_frames = 1025" in out and "dit.width = 32  [default 192]" in out


def test_a_workdir_written_before_the_schema_resumes_bit_for_bit(tmp_path):
  """tests/fixtures/workdir_config_before_schema.json is the config.json `vdm train --config
  configs/spine.py:tiny --set train.dit.steps=3` wrote before the schema (it lacks the fields
  added since). A workdir trained to DiT step 3 with that config.json resumes to step 6 and
  logs exactly what a fresh 6-step run logs."""
  from vdm.train.run import run_training
  os.environ["VDM_NO_PROGRESS"] = "1"
  old = str(tmp_path / "old")
  # That config trained in fp32 (dit.matmul_dtype's default then); a run resuming it says so.
  fp32 = ["dit.matmul_dtype='float32'"]
  run_training(load_config("configs/spine.py:tiny", fp32 + ["train.dit.steps=3",
                                                            "train.dit.checkpoint_every=3"]),
               old, until="dit")
  shutil.copy(os.path.join(FIXTURES, "workdir_config_before_schema.json"),
              os.path.join(old, "config.json"))
  assert "prediction" not in json.load(open(os.path.join(old, "config.json")))
  with pytest.raises(ValueError, match="dit.matmul_dtype"):  # today's default is another model
    run_training(load_config("configs/spine.py:tiny"), old, until="dit")
  run_training(load_config("configs/spine.py:tiny", fp32), old, until="dit")
  fresh = str(tmp_path / "fresh")
  run_training(load_config("configs/spine.py:tiny", fp32), fresh, until="dit")

  def log(workdir):
    lines = [json.loads(l) for l in open(os.path.join(workdir, "dit", "metrics.jsonl"))]
    return [{k: v for k, v in l.items() if k != "seconds"} for l in lines]

  assert [l["step"] for l in log(old)] == [2, 3, 4, 6]
  fresh_log = {l["step"]: l for l in log(fresh)}
  for line in log(old):
    if line["step"] in fresh_log:
      assert line == fresh_log[line["step"]]
  # A different model in the same workdir is still refused, old config or not.
  with pytest.raises(ValueError, match="dit.width"):
    run_training(load_config("configs/spine.py:tiny", ["dit.width=64"]), old, until="dit")
  assert np.isfinite(log(old)[-1]["loss"])


def test_a_registered_data_kind_is_built_and_accepted():
  from vdm.data import kinds
  calls = []
  kinds.register_data_kind(kinds.DataKind(
      "kind_for_test", "a test kind", ("height", "width", "frames", "seed"),
      lambda fields, data_dir: calls.append((dict(fields), data_dir)) or "BUILDER"))
  try:
    config = load_config("configs/spine.py:tiny", ["data.kind='kind_for_test'"])
    assert kinds.build(config.data, "/data") == "BUILDER"
    assert calls == [(dict(height=16, width=16, frames=5, seed=0), "/data")]
  finally:
    del kinds.DATA_KINDS["kind_for_test"]
  with pytest.raises(ConfigError, match="data.kind"):
    load_config("configs/spine.py:tiny", ["data.kind='kind_for_test'"])

"""`vdm plan` on a CPU-sized reduction of configs/model_sizes.py:wan1.3b (its structure: qk-norm,
16 latent channels, full remat, T5-style encoder; smaller widths, depth and clips) on 8 simulated
devices: the state bytes it reads from eval_shape and the shardings agree with XLA's compiled
memory analysis of the step, splitting the parameters divides them, and nothing is allocated.

Not asserted: that remat lowers the temporaries. At this CPU size XLA's CPU memory analysis
reports the same temporaries with and without it (measured: 3.94 MB full vs 3.90 MB none; 91.7
vs 91.9 MB at batch 64 and 64x64 clips), so the remat columns of `vdm plan --grid` are XLA's CPU
figures, to be read as such."""
import json

import jax
import pytest

from vdm import cli
from vdm.config import load_config
from vdm.models import denoiser_param_count
from vdm.train.plan import parse_bytes, plan_denoiser

WAN = "configs/model_sizes.py:wan1.3b"
REDUCED = ["dit.width=64", "dit.depth=2", "dit.heads=4", "dit.mlp_ratio=2.0", "text.width=32",
           "text.depth=1", "text.heads=2", "text.mlp=64", "text.vocab_size=256",
           "text.max_length=8", "data.height=32", "data.width=32", "train.dit.batch_size=8"]


def _plan(*sets, label="as configured"):
  return plan_denoiser(load_config(WAN, REDUCED + list(sets)), label)


@pytest.fixture(scope="module")
def plans():
  before = len(jax.live_arrays())
  out = dict(data=_plan("parallel.data=8"),
             fsdp=_plan("parallel.fsdp=4", "parallel.tensor=2"))
  assert len(jax.live_arrays()) == before  # planned without allocating a single array
  return out


def test_state_bytes_agree_with_xla_memory_analysis(plans):
  config = load_config(WAN, REDUCED)
  params = denoiser_param_count(config, config.text.vocab_size) * 4  # fp32
  data = plans["data"]
  assert data.params == data.ema == params  # replicated: every device holds all of them
  # AdamW's two moments, the int32 counts of Adam and of the schedule, the loop's step.
  assert data.optimizer == 2 * params + 3 * 4
  for plan in plans.values():  # what XLA says the compiled step takes as arguments
    assert plan.arguments == plan.state + plan.batch, plan
    assert plan.temp > 0 and plan.peak > plan.arguments


def test_fsdp_and_tensor_split_the_state(plans):
  data, fsdp = plans["data"], plans["fsdp"]
  # 8 ways for the matrices; norms, biases of split-out axes and tiny arrays stay whole.
  assert data.params / 8 <= fsdp.params < data.params / 4
  assert fsdp.optimizer < data.optimizer / 4
  assert fsdp.batch == 2 * data.batch  # the batch is split 4 ways (fsdp), not 8 (data)


def test_cli_prints_the_table_and_says_what_fits(tmp_path, capsys):
  out = tmp_path / "plan.json"
  sets = [a for s in REDUCED + ["parallel.data=8"] for a in ("--set", s)]
  assert cli.main(["plan", "--config", WAN, *sets, "--devices", "8", "--device-memory", "1TB",
                   "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "| as configured |" in printed and "fits 1024 GiB" in printed and "| yes |" in printed
  written = json.load(open(out))
  assert written["plans"][0]["fits"] is True and written["plans"][0]["devices"] == 8
  assert cli.main(["plan", "--config", WAN, *sets, "--device-memory", "80 parsecs"]) == 2
  assert "--device-memory '80 parsecs'" in capsys.readouterr().err


def test_parse_bytes():
  assert parse_bytes("80GB") == parse_bytes("80 GiB") == 80 * 2 ** 30
  assert parse_bytes("512MB") == 2 ** 29 and parse_bytes("1.5G") == 3 * 2 ** 29
  with pytest.raises(ValueError, match="expected a size"):
    parse_bytes("lots")

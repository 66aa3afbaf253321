"""`vdm train` on the full synthetic benchmark (data.kind = scenes), end to end at tiny size."""
import json
import os

from vdm import cli
from vdm.data import captions, scenes
from vdm.text.tokenizer import Tokenizer


def test_train_on_scenes_and_sample(tmp_path, capsys):
  os.environ["VDM_NO_PROGRESS"] = "1"
  workdir = tmp_path / "w"
  assert cli.main(["train", "--config", "configs/scenes_t2v.py:tiny", "--workdir",
                   str(workdir)]) == 0
  model_dir = workdir / "model"
  config = json.load(open(model_dir / "config.json"))
  assert config["data"]["kind"] == "scenes"
  # The tokenizer learned this dataset's layered captions, not the spine's grammar.
  tok = Tokenizer.load(str(workdir / "tokenizer.model"))
  scene = scenes.sample_scene(scenes.example_rng(0, "train", 0), 16, 16, 5, "train",
                              motion_frames=5, max_objects=3)
  long = captions.long_caption(scene)
  assert tok.decode(tok.encode([long], 256)[0])[0] == long
  out = tmp_path / "clip.mp4"
  assert cli.main(["sample", "--checkpoint", str(model_dir), "--prompt", long, "--steps", "2",
                   "--out", str(out)]) == 0
  assert os.path.getsize(out) > 0


def test_cli_tokenizer_trains_on_the_captions_of_vdm_train(tmp_path):
  """`vdm tokenizer` follows data.kind as `vdm train` does: the same tokenizer bytes for the
  scenes dataset (built under the folder of --out) and for the spine's grammar."""
  tokenizers = {}
  for name in ("scenes_t2v", "spine"):
    (tmp_path / name).mkdir()
    out = tmp_path / name / "tokenizer.model"
    assert cli.main(["tokenizer", "--config", f"configs/{name}.py:tiny", "--out", str(out)]) == 0
    workdir = tmp_path / f"{name}_train"
    assert cli.main(["train", "--config", f"configs/{name}.py:tiny", "--workdir", str(workdir),
                     "--until", "tokenizer"]) == 0
    tokenizers[name] = out.read_bytes()
    assert tokenizers[name] == (workdir / "tokenizer.model").read_bytes(), name
  assert tokenizers["scenes_t2v"] != tokenizers["spine"]

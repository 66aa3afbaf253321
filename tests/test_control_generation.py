"""Generation with control: trajectories and cameras reach the model (also with image-to-video),
prompt timelines run chunk by chunk with the KV cache exactly as the full matrix with a prompt
per frame (keep and cut), recache under an unchanged prompt equals keep, and every invalid
trajectory, camera or timeline is refused with its field named and nothing written."""
import json
import os

import numpy as np
import pytest

from test_invalid_inputs import _exit_code  # cli.main's exit code and stderr
from vdm import cli
from vdm.config import load_config

CONFIG = "configs/control.py:tiny"  # 16x16, 5 frames; trajectory and camera inputs
PATH = {"objects": [{"keypoints": [{"frame": 0, "x": 3, "y": 8}, {"frame": 8, "x": 12, "y": 8}]}]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """A tiny control model with small random weights (no training): every input changes the
  frames, so what reaches the model can be checked."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from vdm.data.simple import caption_corpus
  from vdm.models import build_denoiser, build_vae, save_model_dir
  from vdm.text.tokenizer import Tokenizer, train_tokenizer
  config = load_config(CONFIG)
  tokenizer = Tokenizer(train_tokenizer(caption_corpus(0, 2000),
                                        vocab_size=config.text.vocab_size))
  directory = str(tmp_path_factory.mktemp("control_model"))

  def random(build, seed):  # filled into eval_shape: skips the slow eager init
    graphdef, state = nnx.split(nnx.eval_shape(build))
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, [
        0.15 * jax.random.normal(k, x.shape, x.dtype) if jnp.issubdtype(x.dtype, jnp.floating)
        else jnp.zeros(x.shape, x.dtype) for k, x in zip(keys, leaves)]))

  c = config.vae.latent_channels
  save_model_dir(directory, config=config, tokenizer=tokenizer,
                 vae=random(lambda: build_vae(config), 0),
                 denoiser=random(lambda: build_denoiser(config, tokenizer.vocab_size), 1),
                 latent_stats=dict(mean=np.zeros(c), std=np.ones(c)))
  return directory


@pytest.fixture(scope="module")
def pipe(model_dir):
  from vdm.generate.pipeline import Pipeline
  return Pipeline.load(model_dir)


LONG = dict(seconds=1.125, steps=2, chunk=1)  # 9 frames: 5 latent frames, chunks of one


def test_trajectory_and_camera_reach_the_model(pipe, tmp_path):
  clip = dict(seed=0, steps=2, seconds=1.125)
  base = pipe("a red circle", **clip)
  with_path = pipe("a red circle", trajectory=PATH, **clip)
  assert with_path.shape == base.shape == (9, 16, 16, 3)
  np.testing.assert_array_equal(with_path, pipe("a red circle", trajectory=PATH, **clip))
  assert np.abs(with_path.astype(int) - base).max() > 0
  with_camera = pipe("a red circle", trajectory=PATH, camera="pan(1,0)", **clip)
  assert np.abs(with_camera.astype(int) - with_path).max() > 0
  # Image-to-video: the given first frame stays, the controls still change the rest.
  import mediapy
  image = tmp_path / "first.png"
  mediapy.write_image(str(image), base[0])
  i2v = pipe("a red circle", mode="image_to_video", image=str(image), **clip)
  i2v_path = pipe("a red circle", mode="image_to_video", image=str(image), trajectory=PATH,
                  camera="zoom(1.2)", **clip)
  assert np.abs(i2v_path[1:].astype(int) - i2v[1:]).max() > 0
  assert np.abs(i2v_path[0].astype(int) - i2v[0]).max() <= 1


@pytest.mark.parametrize("switch", ["keep", "cut"])
def test_timeline_streamed_with_the_kv_cache_equals_the_matrix(pipe, switch):
  """Chunk by chunk, each with its own prompt (and a cleared cache at a cut), gives the frames
  of the full matrix with a prompt per frame and no attention across the cut."""
  timeline = "0s: a red circle moving right; 0.375s: a blue square moving up"
  options = dict(prompts=timeline, switch=switch, mode="autoregressive", seed=3, **LONG)
  streamed = pipe(**options)
  matrix = pipe(**options, kv_cache=False)
  assert streamed.shape == (9, 16, 16, 3)
  assert np.abs(streamed.astype(int) - matrix).max() <= 1
  plain = pipe("a red circle moving right", mode="autoregressive", seed=3, **LONG)
  # Chunks 0 and 1 (frames 0-2) play the first prompt: as a plain clip; the rest does not.
  assert np.abs(streamed[:2].astype(int) - plain[:2]).max() <= 1
  assert np.abs(streamed[3:].astype(int) - plain[3:]).max() > 1


def test_recache_under_the_same_prompt_equals_keep_and_differs_otherwise(pipe):
  """Recache re-encodes the cached frames under the new prompt: with an unchanged prompt (and
  clean context) that is the cache keep already holds."""
  same = "0s: a red circle; 0.375s: a red circle"
  options = dict(mode="autoregressive", seed=1, **LONG)
  keep = pipe(prompts=same, switch="keep", **options)
  np.testing.assert_allclose(pipe(prompts=same, switch="recache", **options), keep, atol=1)
  other = "0s: a red circle; 0.375s: a blue square"
  assert np.abs(pipe(prompts=other, switch="recache", **options).astype(int)
                - pipe(prompts=other, switch="keep", **options)).max() > 0


def test_rolling_timeline_and_sidecar(model_dir, tmp_path):
  out = tmp_path / "roll.mp4"
  timeline = tmp_path / "timeline.json"
  timeline.write_text(json.dumps({"prompts": ["a red circle", "a blue square"], "segments": [
      {"start": 0, "end": 0.5, "prompt": 0}, {"start": 0.5, "prompt": 1, "switch": "cut"}]}))
  path = tmp_path / "path.json"
  path.write_text(json.dumps(PATH))
  assert cli.main(["sample", "--checkpoint", model_dir, "--prompts", str(timeline), "--mode",
                   "rolling", "--chunk", "1", "--seconds", "1.125", "--steps", "2",
                   "--trajectory", str(path), "--camera", "pan(0.5,0)", "--out", str(out)]) == 0
  sidecar = json.load(open(tmp_path / "roll.json"))["request"]
  assert sidecar["timeline"]["segments"][1] == {"start": 0.5, "prompt": 1, "switch": "cut"}
  assert sidecar["prompt"] == "a red circle" and len(sidecar["trajectory"][0]) == 9
  np.testing.assert_allclose(np.asarray(sidecar["camera"])[:, 1], -0.5 * np.arange(9),
                             atol=1e-5)


@pytest.mark.parametrize("extra, words", [
    (["--trajectory", "{short}"], "--trajectory objects[0].points: needs one [x, y] per frame: "
                                  "9 points"),
    (["--trajectory", "{outside}"], "--trajectory objects[0] frame 2: point (30, 8) is outside "
                                    "the 16x16 frame"),
    (["--camera", "pan(1)"], "--camera 'pan(1)': pan() takes 2 numbers, got 1"),
    (["--camera", "tilt(3)"], "'tilt(3)' is not a move"),
    (["--prompts", "0s: a; 0.5s: b; 0.25s: c", "--mode", "autoregressive"],
     "--prompts entry 3.start: 0.25 s overlaps the segment before it"),
    (["--prompts", "{unknown}", "--mode", "autoregressive"],
     "--prompts segments[1].prompt: unknown prompt index 5: allowed 0 to 1"),
    (["--prompts", "0s: a; 2s: b", "--mode", "autoregressive"],
     "--prompts segments[1].start: 2 s is not before the end of the 1.125 s clip"),
    (["--prompts", "0s: a; 0.5s: b", "--mode", "parallel"], "--prompts (a timeline) needs "
                                                             "--mode in ['autoregressive', "
                                                             "'rolling']"),
    (["--prompts", "0s: a; 0.5s: b", "--mode", "rolling", "--switch", "recache"],
     "--switch recache re-encodes the KV cache: it needs --mode ['autoregressive']"),
])
def test_invalid_controls_exit_2_naming_the_field_and_write_nothing(model_dir, tmp_path, capsys,
                                                                     extra, words):
  files = {"short": {"objects": [{"points": [[3, 8]] * 8}]},
           "outside": {"objects": [{"points": [[3, 8], [4, 8], [30, 8]] + [[3, 8]] * 6}]},
           "unknown": {"prompts": ["a", "b"], "segments": [{"start": 0, "prompt": 0},
                                                           {"start": 0.5, "prompt": 5}]}}
  for name, content in files.items():
    (tmp_path / f"{name}.json").write_text(json.dumps(content))
  extra = [str(tmp_path / (a[1:-1] + ".json")) if a.startswith("{") else a for a in extra]
  prompt = [] if "--prompts" in extra else ["--prompt", "a red circle"]
  out = tmp_path / "never.mp4"
  code, err = _exit_code(["sample", "--checkpoint", model_dir, *prompt, "--seconds", "1.125",
                        "--steps", "1", *extra, "--out", str(out)], capsys)
  assert code == 2 and words in err and err.startswith("vdm sample: error: "), err
  assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
  assert not out.exists() and not (tmp_path / "never.json").exists()


def test_controls_a_model_lacks_or_that_clash_are_refused(capsys, tmp_path):
  out = tmp_path / "x.mp4"
  code, err = _exit_code(["sample", "--checkpoint", "checkpoints/spine", "--prompt", "a red circle",
                        "--camera", "pan(1,0)", "--out", str(out)], capsys)
  assert code == 2 and "--camera: this model has no camera input" in err, err
  code, err = _exit_code(["sample", "--checkpoint", "checkpoints/spine", "--prompt", "a",
                        "--prompts", "0s: a", "--out", str(out)], capsys)
  assert code == 2 and "not allowed with argument --prompt" in err, err
  code, err = _exit_code(["sample", "--checkpoint", "checkpoints/spine", "--prompt", "a",
                        "--switch", "cut", "--out", str(out)], capsys)
  assert code == 2 and "--switch applies to prompt timelines" in err, err
  assert not out.exists()


def test_control_suite_runs_and_writes_its_report(model_dir, tmp_path, monkeypatch):
  from vdm.generate.pipeline import Pipeline
  scales, call = [], Pipeline.__call__
  def recording(self, *args, **kwargs):  # every sample of every part gets --guidance
    scales.append(kwargs.get("guidance"))
    return call(self, *args, **kwargs)
  monkeypatch.setattr(Pipeline, "__call__", recording)
  out = tmp_path / "control.json"
  assert cli.main(["eval", "control", "--checkpoint", model_dir, "--num", "1", "--steps", "1",
                   "--guidance", "2.5", "--out", str(out)]) == 0
  report = json.load(open(out))
  assert report["guidance"] == 2.5 and len(scales) >= 7 and set(scales) == {2.5}, scales
  assert report["trajectory"]["text"]["found"] >= 0 and len(report["trajectory"]["rows"]) == 1
  assert set(report["camera"]) == {"rows", "text", "camera"}
  timeline = report["timeline"]
  assert timeline["frames"] == 9 and timeline["switch_seconds"] == 0.5
  assert {"keep", "recache", "cut"} <= set(timeline["rows"][0])
  assert "adherence within 2 chunks" in (tmp_path / "control.md").read_text()


def test_timeline_cases_swap_the_object_colour_only():
  from vdm.eval.control import timeline_cases
  spine = load_config("configs/spine.py").data
  for case in timeline_cases(spine, 4):
    first, second = case["first"].split(), case["second"].split()
    assert [i for i, (a, b) in enumerate(zip(first, second)) if a != b] == [1]
    assert case["old"] != case["new"]
  scenes_data = load_config(CONFIG).data
  for case in timeline_cases(scenes_data, 3):
    assert case["first"] != case["second"] and len(case["first"]) > 10

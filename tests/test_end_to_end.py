"""The spine at tiny size: train every stage, export, load, sample from Python and the CLI."""
import json
import os

import numpy as np
import pytest

from vdm import cli
from vdm.config import load_config
from vdm.models import load_model_dir
from vdm.train.run import run_training

TINY = "configs/spine.py:tiny"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  os.environ["VDM_NO_PROGRESS"] = "1"
  workdir = str(tmp_path_factory.mktemp("spine_tiny"))
  model_dir = run_training(load_config(TINY), workdir)
  return workdir, model_dir


@pytest.fixture(scope="module")
def pipe(trained):
  import vdm
  return vdm.Pipeline.load(trained[1])


def test_training_writes_logs_checkpoints_and_model(trained):
  workdir, model_dir = trained
  for stage in ("vae", "dit"):
    lines = [json.loads(l) for l in open(os.path.join(workdir, stage, "metrics.jsonl"))]
    assert [l["step"] for l in lines] == [2, 4, 6]
    assert all(np.isfinite(l["loss"]) for l in lines)
    assert os.listdir(os.path.join(workdir, stage, "tensorboard"))
  for name in ("config.json", "tokenizer.model", "latent_stats.json", "vae", "denoiser",
               "provenance.json"):
    assert os.path.exists(os.path.join(model_dir, name)), name


def test_rerun_resumes_instead_of_retraining(trained):
  workdir, model_dir = trained
  before = open(os.path.join(workdir, "dit", "metrics.jsonl")).read()
  run_training(load_config(TINY), workdir)
  assert open(os.path.join(workdir, "dit", "metrics.jsonl")).read() == before


def test_model_directory_round_trip(trained, pipe):
  """Parameters restored from the exported directory equal those in the final checkpoint."""
  import jax
  from flax import nnx
  config, tokenizer, vae, denoiser, stats = load_model_dir(trained[1])
  for a, b in zip(jax.tree.leaves(nnx.state(denoiser)), jax.tree.leaves(nnx.state(pipe.denoiser))):
    np.testing.assert_array_equal(a, b)
  assert config.dit.width == load_config(TINY).dit.width
  assert tokenizer.vocab_size > 3 and stats["std"].shape == (config.vae.latent_channels,)


def test_same_seed_same_frames(pipe):
  a = pipe("a red circle moving right on a blue background", seed=3)
  b = pipe("a red circle moving right on a blue background", seed=3)
  c = pipe("a red circle moving right on a blue background", seed=4)
  assert a.dtype == np.uint8 and a.shape == (5, 16, 16, 3)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_user_controls_shape_the_clip(pipe):
  frames = pipe("a green square moving up", seconds=1.0, fps=8, aspect="16:9", resolution=16,
                steps=2, guidance=2.0, negative_prompt="red")
  assert frames.shape == (9, 16, 28, 3)  # 16 * 16/9 = 28.4, rounded to the stride 4
  assert pipe("a green square", aspect="9:16").shape[1:3] == (28, 16)


@pytest.mark.parametrize("options, message", [
    (dict(aspect="4:3"), "--aspect"),
    (dict(resolution=18), "--resolution"),
    (dict(resolution=0), "--resolution"),
    (dict(seconds=0), "--seconds"),
    (dict(seconds=-1.0), "--seconds"),
    (dict(seconds=100.0), "beyond this model's limit"),
    (dict(steps=0), "--steps"),
    (dict(guidance=-1.0), "--guidance"),
    (dict(mode="sideways"), "--mode"),
    (dict(fps=0), "--fps"),
])
def test_bad_options_name_the_option(pipe, options, message):
  with pytest.raises(ValueError, match=message):
    pipe.resolve("a red circle", **options)


@pytest.mark.parametrize("prompt", ["", "   ", None])
def test_empty_prompt_is_rejected(pipe, prompt):
  with pytest.raises(ValueError, match="--prompt"):
    pipe.resolve(prompt)


def test_odd_prompts_are_handled(pipe):
  with pytest.warns(UserWarning, match="longer than"):
    long = pipe("red " * 3000, steps=1)
  assert long.shape[0] == 5
  assert pipe("\x00\x07 красный круг 赤い丸 \t", steps=1).dtype == np.uint8


def test_cli_sample_writes_video_and_sidecar(trained, tmp_path, capsys):
  out = tmp_path / "clip.mp4"
  argv = ["sample", "--prompt", "a blue circle moving left", "--seed", "1", "--steps", "2",
          "--checkpoint", trained[1], "--out", str(out)]
  assert cli.main(argv) == 0
  sidecar = json.load(open(tmp_path / "clip.json"))
  assert sidecar["request"]["prompt"] == "a blue circle moving left"
  assert sidecar["request"]["seed"] == 1 and "git_commit" in sidecar and "config" in sidecar
  from vdm.video_io import read_video
  video = read_video(str(out))
  assert video.shape == (5, 16, 16, 3)
  # An existing output is not overwritten without --overwrite.
  assert cli.main(argv) == 2
  assert "--overwrite" in capsys.readouterr().err
  assert cli.main(argv + ["--overwrite"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "/nonexistent/dir"], "no such directory"),
    (["--aspect", "2:1"], "--aspect"),
    (["--prompt", ""], "--prompt"),
])
def test_cli_errors_are_clear(trained, tmp_path, capsys, args, message):
  argv = ["sample", "--prompt", "a red circle", "--checkpoint", trained[1],
          "--out", str(tmp_path / "x.mp4")] + args
  assert cli.main(argv) == 2
  assert message in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "x.mp4")


def test_cli_rejects_a_directory_that_is_not_a_model(tmp_path, capsys):
  (tmp_path / "config.json").write_text("{}")
  assert cli.main(["sample", "--prompt", "a red circle", "--checkpoint", str(tmp_path),
                   "--out", str(tmp_path / "x.mp4")]) == 2
  assert "missing" in capsys.readouterr().err


def test_cli_eval_adherence_writes_report(trained, tmp_path):
  out = tmp_path / "adherence.json"
  assert cli.main(["eval", "adherence", "--checkpoint", trained[1], "--num", "2", "--steps", "2",
                   "--out", str(out)]) == 0
  report = json.load(open(out))
  assert report["summary"]["n"] == 2 and len(report["rows"]) == 2
  assert 0.0 <= report["summary"]["color_accuracy"] <= 1.0
  # The prompts are test-split compositions, never seen in training.
  from vdm.data import simple
  for row in report["rows"]:
    words = row["caption"].split()
    spec = (simple.COLOR_NAMES.index(words[1]), simple.SHAPES.index(words[2]))
    assert spec[0] >= 0
  assert (tmp_path / "adherence.md").read_text().startswith("| metric | value |")


def test_cli_eval_rollout_and_vae_suites_write_reports(trained, tmp_path):
  out = tmp_path / "rollout.json"
  assert cli.main(["eval", "--suite", "rollout", "--checkpoint", trained[1], "--num", "1",
                   "--steps", "2", "--lengths", "1,2", "--out", str(out)]) == 0
  summary = json.load(open(out))["summary"]
  assert {e["frames"] for e in summary.values()} == {5, 9}
  for entry in summary.values():
    assert len(entry["colour_error"]["per_seed"]) == 3  # three sampling seeds
    assert 0.0 <= entry["object_ok"]["mean"] <= 1.0
  assert "| method | length |" in (tmp_path / "rollout.md").read_text()
  out = tmp_path / "coherence.json"
  assert cli.main(["eval", "--suite", "coherence", "--checkpoint", trained[1], "--num", "1",
                   "--steps", "2", "--lengths", "1,4", "--out", str(out)]) == 0
  summary = json.load(open(out))["summary"]
  # parallel stops at sample.max_frames (9 for tiny); the streaming modes go on
  assert set(summary) == {"parallel @ 1x", "autoregressive @ 1x", "autoregressive @ 4x",
                          "rolling @ 1x", "rolling @ 4x"}
  assert summary["rolling @ 4x"]["frames"] == 17
  for entry in summary.values():
    assert entry["n"] == 1 and 0.0 <= entry["coherent"] <= entry["motion_ok"] <= 1.0
  assert "| mode | length |" in (tmp_path / "coherence.md").read_text()
  out = tmp_path / "vae.json"
  assert cli.main(["eval", "--suite", "vae", "--checkpoint", trained[1], "--num", "2",
                   "--out", str(out)]) == 0
  rows = json.load(open(out))["rows"]
  assert any(name.startswith("synthetic test (2 clips") for name in rows)
  assert any(name.startswith("skimage") for name in rows)  # a real clip from a dependency
  for r in rows.values():
    assert np.isfinite(r["psnr"]) and -1.0 <= r["ssim"] <= 1.0


def test_cli_sample_applies_post_pipeline(trained, tmp_path, capsys):
  out = tmp_path / "big.mp4"
  base = ["sample", "--prompt", "a red circle", "--steps", "1", "--checkpoint", trained[1]]
  assert cli.main(base + ["--post", "upscale(2)|sharpen(0.3)", "--out", str(out)]) == 0
  from vdm.video_io import read_video
  assert read_video(str(out)).shape == (5, 32, 32, 3)
  assert json.load(open(tmp_path / "big.json"))["post"] == "upscale(2)|sharpen(0.3)"
  # A malformed pipeline fails before sampling, naming where the error is.
  assert cli.main(base + ["--post", "upscale(2", "--out", str(tmp_path / "bad.mp4")]) == 2
  assert "upscale(2" in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "bad.mp4")


@pytest.mark.parametrize("mode, chunk", [("autoregressive", 1), ("rolling", 1),
                                         ("autoregressive", 3)])
def test_modes_and_samplers_run_through_the_pipeline(pipe, mode, chunk):
  frames = pipe("a red circle", mode=mode, chunk=chunk, steps=2, context_noise=0.05)
  assert frames.shape == (5, 16, 16, 3)
  assert pipe("a red circle", sampler="heun", steps=2).shape == (5, 16, 16, 3)


def test_image_to_video_keeps_the_given_first_frame_latent(pipe, tmp_path):
  """The given image is encoded alone by the causal VAE and pinned at level 0: decoding only
  that latent frame must reproduce what the VAE makes of the image itself."""
  import jax.numpy as jnp
  import mediapy
  from vdm.data import simple
  _, example = next(simple.generate_examples(0, "test", 1, 16, 16, 5))
  path = str(tmp_path / "first.png")
  mediapy.write_image(path, example["video"][0])
  request = pipe.resolve("a red circle", mode="image_to_video", image=path, steps=3)
  latent = pipe._encode_first_frame(request)
  z = pipe.vae.encode(jnp.asarray(example["video"][:1], jnp.float32)[None] / 127.5 - 1)[0]
  np.testing.assert_allclose(latent * pipe.latent_std + pipe.latent_mean, z[:, 0], atol=1e-5)
  assert pipe.generate(request)["frames"].shape == (5, 16, 16, 3)


@pytest.mark.parametrize("options, message", [
    (dict(mode="autoregressive", chunk=4), "--chunk"),
    (dict(mode="parallel", seconds=3.0), "--seconds"),  # beyond max_frames: only streaming AR
    (dict(extend="/nonexistent.mp4"), "nonexistent"),
    (dict(extend=__file__), "--extend"),  # not a video
    (dict(extend=__file__, mode="parallel"), "--extend"),
    (dict(sampler="rk45"), "--sampler"),
    (dict(context_noise=1.0), "--context-noise"),
    (dict(mode="image_to_video"), "--image"),
    (dict(image="/nonexistent.png"), "--image"),
])
def test_bad_mode_options_are_named(pipe, options, message):
  with pytest.raises(ValueError, match=message):
    pipe.resolve("a red circle", **options)


@pytest.mark.parametrize("options", [dict(mode="autoregressive"), dict(mode="rolling"),
                                     dict(mode="autoregressive", kv_cache=False)])
def test_grouped_frame_models_refuse_chunked_modes(pipe, options):
  """A model with dit.temporal_patch > 1 has no chunked generation: the request names the mode
  and the field before anything runs."""
  import vdm
  config = pipe.config.copy_and_resolve_references()
  config.dit.temporal_patch = 2
  grouped = vdm.Pipeline(config, pipe.tokenizer, pipe.vae, pipe.denoiser,
                         dict(mean=pipe.latent_mean, std=pipe.latent_std))
  with pytest.raises(ValueError, match=r"--mode .*dit\.temporal_patch=1"):
    grouped.resolve("a red circle", **options)
  grouped.resolve("a red circle", mode="parallel")


def test_cli_rejects_an_unknown_video_suffix_before_loading_the_model(tmp_path, capsys,
                                                                      monkeypatch):
  from vdm.generate.pipeline import Pipeline

  def no_load(directory):
    raise AssertionError("the model must not be loaded for a bad --out")

  monkeypatch.setattr(Pipeline, "load", staticmethod(no_load))
  assert cli.main(["sample", "--prompt", "a red circle", "--out", str(tmp_path / "x.avi")]) == 2
  assert "--out" in capsys.readouterr().err


@pytest.mark.parametrize("mode, chunk, context_noise, seconds", [
    ("autoregressive", 1, 0.0, None), ("autoregressive", 3, 0.1, None),
    ("autoregressive", 1, 0.0, 9 / 8), ("autoregressive", 2, 0.1, 9 / 8),
    ("rolling", 1, 0.1, 9 / 8), ("rolling", 2, 0.0, 9 / 8)])
def test_pipeline_kv_cache_equals_recomputing_the_past(pipe, mode, chunk, context_noise, seconds):
  """Also beyond the training length (9 frames = 5 latent frames, trained on 3): the ring
  buffer's window and the matrix path's sliding-window mask must agree."""
  options = dict(mode=mode, chunk=chunk, steps=3, context_noise=context_noise,
                 guidance=3.0, negative_prompt="blue", seconds=seconds)
  cached = pipe.generate(pipe.resolve("a red circle", **options))["frames"]
  full = pipe.generate(pipe.resolve("a red circle", kv_cache=False, **options))["frames"]
  assert np.abs(cached.astype(int) - full.astype(int)).max() <= 1


def test_long_autoregressive_clip_streams_in_pieces(pipe):
  """A clip past max_frames (9 for tiny) runs in AR mode with the cache, one piece per chunk."""
  pieces = []
  request = pipe.resolve("a red circle", mode="autoregressive", chunk=2, steps=2, seconds=33 / 8)
  assert request.window == 1  # trained on 3 latent frames: a chunk of 2 sees 1 frame before it
  frames = pipe.generate(request, on_frames=pieces.append)["frames"]
  assert frames.shape == (33, 16, 16, 3)
  assert [len(p) for p in pieces] == [1] + [4] * 8  # frame 0 alone, then 2 latents = 4 frames
  np.testing.assert_array_equal(np.concatenate(pieces), frames)


def test_long_rolling_clip_streams_in_pieces(pipe):
  """Rolling mode past max_frames: streamed row by row (chunks in flight as one window), one
  piece per chunk; a multistep sampler cannot stream rolling and keeps the matrix's limit."""
  pieces = []
  request = pipe.resolve("a red circle", mode="rolling", chunk=1, steps=3, seconds=33 / 8)
  result = pipe.generate(request, on_frames=pieces.append, keep_frames=False)
  assert result["frames"] is None and result["shape"] == (33, 16, 16, 3)
  assert [len(p) for p in pieces] == [1] + [2] * 16
  with pytest.raises(ValueError, match="at most"):
    pipe.resolve("a red circle", mode="rolling", sampler="unipc", seconds=33 / 8)


def test_extend_continues_a_video(pipe, tmp_path, capsys):
  from vdm.data import simple
  from vdm.video_io import read_video, write_video
  _, example = next(simple.generate_examples(0, "test", 1, 16, 16, 5))
  given_path = str(tmp_path / "given.mp4")
  write_video(given_path, example["video"], 8)
  given = read_video(given_path)
  request = pipe.resolve("a red circle", extend=given_path, seconds=0.5, steps=2)
  assert request.mode == "autoregressive" and request.frames == 4
  frames = pipe.generate(request)["frames"]
  assert frames.shape == (9, 16, 16, 3)
  np.testing.assert_array_equal(frames[:5], given)  # the given clip, then the continuation
  out = tmp_path / "longer.mp4"
  assert cli.main(["sample", "--checkpoint", pipe.directory, "--prompt", "a red circle",
                   "--extend", given_path, "--seconds", "1", "--steps", "2",
                   "--out", str(out)]) == 0
  assert read_video(str(out)).shape == (5 + 8, 16, 16, 3)
  assert json.load(open(tmp_path / "longer.json"))["request"]["extend"] == given_path


def test_model_whose_config_no_longer_fits_its_weights_names_the_parameters(trained, tmp_path,
                                                                           capsys):
  import shutil
  edited = tmp_path / "edited"
  shutil.copytree(trained[1], edited)
  config = json.load(open(edited / "config.json"))
  config["dit"]["mlp_ratio"] = 2.0  # the weights were trained with 4.0
  json.dump(config, open(edited / "config.json", "w"))
  assert cli.main(["sample", "--checkpoint", str(edited), "--prompt", "a red circle",
                   "--out", str(tmp_path / "x.mp4")]) == 2
  err = capsys.readouterr().err
  assert "dit.blocks.0.mlp.fc1.kernel: checkpoint (32, 128) vs config (32, 64)" in err
  assert not os.path.exists(tmp_path / "x.mp4")


def test_a_model_runs_in_the_other_layer_layout_with_the_same_frames(trained):
  """Trained unrolled, loaded scanned (and back): the converters are exact, so the same request
  gives the same frames up to float rounding, in parallel and KV-cached autoregressive modes."""
  import vdm
  scanned = vdm.Pipeline.load(trained[1], scan_layers=True)
  assert scanned.config.dit.scan_layers and scanned.denoiser.dit.scan_layers
  unrolled = vdm.Pipeline.load(trained[1])
  back = vdm.Pipeline.load(trained[1], scan_layers=False)  # its own layout: loaded as it is
  for options in (dict(steps=3), dict(mode="autoregressive", chunk=1, steps=2)):
    want = unrolled.generate(unrolled.resolve("a red circle", **options))["frames"]
    got = scanned.generate(scanned.resolve("a red circle", **options))["frames"]
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    np.testing.assert_array_equal(back.generate(back.resolve("a red circle", **options))["frames"],
                                  want)

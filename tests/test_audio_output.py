"""A tiny joint audio-video model end to end: train every stage (the audio VAE through the one
loop), export, load; `vdm sample --audio` writes an mp4 whose AAC track lasts as long as its video
and a .wav beside it; --out .wav, --audio-from, --video-from and video-only requests; bad sound
options get one line; the av-sync suite runs on it; models without sound load unchanged."""
import json
import os

import numpy as np
import pytest

from vdm import cli
from vdm.config import load_config
from vdm.train.run import run_training

TINY = "configs/audio.py:tiny"
PROMPT = "a red circle bouncing quickly off the walls on a blue background, with a low hum"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  os.environ["VDM_NO_PROGRESS"] = "1"
  workdir = str(tmp_path_factory.mktemp("audio_tiny"))
  return workdir, run_training(load_config(TINY), workdir)


@pytest.fixture(scope="module")
def pipe(trained):
  import vdm
  return vdm.Pipeline.load(trained[1])


def _sample(argv, capsys):
  code = cli.main(["sample", "--steps", "2", "--overwrite"] + argv)
  return code, capsys.readouterr().err


def test_training_runs_the_audio_stage_and_exports_it(trained):
  workdir, model_dir = trained
  lines = [json.loads(l) for l in open(os.path.join(workdir, "audio_vae", "metrics.jsonl"))]
  assert [l["step"] for l in lines] == [2, 4] and all(np.isfinite(l["loss"]) for l in lines)
  dit = [json.loads(l) for l in open(os.path.join(workdir, "dit", "metrics.jsonl"))]
  assert all(np.isfinite(l["audio_flow_loss"]) for l in dit)
  assert os.path.isdir(os.path.join(model_dir, "audio_vae"))
  stats = json.load(open(os.path.join(model_dir, "latent_stats.json")))
  assert len(stats["audio_mean"]) == load_config(TINY).audio.latent_channels


def test_mp4_with_sound_and_wav_beside_it(trained, tmp_path, capsys):
  from vdm.video_io import probe_timeline, read_audio, read_video
  out = str(tmp_path / "clip.mp4")
  code, err = _sample(["--checkpoint", trained[1], "--prompt", PROMPT, "--audio", "--out", out],
                      capsys)
  assert code == 0, err
  config = load_config(TINY)
  fps, rate = config.data.fps, config.data.sample_rate
  timeline = probe_timeline(out)
  assert timeline.failure is None and not timeline.damage
  assert timeline.audio_end is not None, "the mp4 has an audio stream"
  assert abs(timeline.audio_end - timeline.end) <= 1.0 / fps  # within a frame of the video
  frames = read_video(out)
  wav = read_audio(out[:-4] + ".wav", rate)
  assert len(wav) == len(frames) * rate // fps
  assert len(read_audio(out, rate)) >= len(wav) - rate // fps  # the track decodes too
  sidecar = json.load(open(out[:-4] + ".json"))
  assert sidecar["sample_rate"] == rate and sidecar["request"]["audio"] is True


def test_sound_alone_and_given_streams(pipe, tmp_path, capsys):
  from vdm.video_io import read_audio, write_video, write_wav
  rate, fps = pipe.sample_rate, pipe.config.data.fps
  wav_only = str(tmp_path / "sound.wav")
  code, err = _sample(["--checkpoint", pipe.directory, "--prompt", PROMPT, "--audio", "--out",
                       wav_only], capsys)
  assert code == 0, err
  assert os.path.exists(wav_only) and not os.path.exists(str(tmp_path / "sound.mp4"))

  frames, audio = pipe(PROMPT, seed=3, steps=2, audio=True)
  again = pipe(PROMPT, seed=3, steps=2, audio=True)
  np.testing.assert_array_equal(audio, again[1])  # same seed, same bits
  np.testing.assert_array_equal(frames, again[0])
  assert len(audio) == len(frames) * rate // fps
  video_only = pipe(PROMPT, seed=3, steps=2)  # a joint model still answers video requests
  assert isinstance(video_only, np.ndarray) and video_only.shape == frames.shape

  given = np.clip(np.sin(np.arange(len(audio)) * 0.3) * 0.2, -1, 1).astype(np.float32)
  write_wav(str(tmp_path / "given.wav"), given, rate)
  out_frames, out_audio = pipe(PROMPT, seed=3, steps=2,
                               audio_from=str(tmp_path / "given.wav"))
  np.testing.assert_allclose(out_audio, read_audio(str(tmp_path / "given.wav"), rate), atol=0)
  assert out_frames.shape == frames.shape

  write_video(str(tmp_path / "given.mp4"), frames, fps)
  from vdm.video_io import read_video
  given_frames = read_video(str(tmp_path / "given.mp4"))
  out_frames, out_audio = pipe(PROMPT, seed=3, steps=2, video_from=str(tmp_path / "given.mp4"))
  np.testing.assert_array_equal(out_frames, given_frames)  # the given video comes back as given
  assert len(out_audio) == len(audio)


@pytest.mark.parametrize("extra,words", [
    (["--audio", "--out", "{tmp}/x.gif"], ["--out", ".wav"]),
    (["--audio-from", "{tmp}/missing.wav", "--out", "{tmp}/x.mp4"], ["--audio-from", "no such"]),
    (["--audio-guidance", "2", "--out", "{tmp}/x.mp4"], ["--audio-guidance", "without sound"]),
    (["--audio", "--fps", "16", "--out", "{tmp}/x.mp4"], ["--fps", "training frame rate"]),
    (["--audio", "--image", "{tmp}/x.png", "--out", "{tmp}/x.mp4"], ["--image"]),
])
def test_bad_sound_options_get_one_line(trained, tmp_path, capsys, extra, words):
  argv = [a.replace("{tmp}", str(tmp_path)) for a in extra]
  if "--image" in argv:
    import mediapy
    mediapy.write_image(str(tmp_path / "x.png"), np.zeros((16, 16, 3), np.uint8))
  code, err = _sample(["--checkpoint", trained[1], "--prompt", PROMPT] + argv, capsys)
  lines = [l for l in err.splitlines() if l.strip() and "warn" not in l.lower()]
  assert code == 2 and len(lines) == 1 and lines[0].startswith("vdm sample: error:"), err
  assert all(w in lines[0] for w in words), lines[0]
  assert not any(p.suffix in (".mp4", ".wav") for p in tmp_path.iterdir())


def test_a_model_without_sound_refuses_sound_and_loads_unchanged(capsys, tmp_path):
  import vdm
  code, err = _sample(["--checkpoint", "checkpoints/spine", "--prompt", "a red circle", "--audio",
                       "--out", str(tmp_path / "x.mp4")], capsys)
  assert code == 2 and "makes no sound" in err
  pipe = vdm.Pipeline.load("checkpoints/spine")
  assert pipe.audio_vae is None and not pipe.config.audio.enabled and pipe.sample_rate == 0
  assert not hasattr(pipe.denoiser.dit, "audio_blocks")


def test_av_sync_suite_runs_on_the_joint_model(trained, tmp_path, capsys):
  out = str(tmp_path / "av.json")
  code = cli.main(["eval", "av-sync", "--checkpoint", trained[1], "--num", "1", "--steps", "2",
                   "--out", out])
  assert code == 0, capsys.readouterr().err
  report = json.load(open(out))
  assert set(report["summary"]) == {"ground_truth", "generated", "audio_for_true_video",
                                    "random_training_audio"}
  assert os.path.exists(out[:-5] + ".md")

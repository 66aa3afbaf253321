"""The DiT's audio stream (vdm.dit.audio) and the joint training objective: the video path of an
untrained joint DiT is the video DiT's, masks and time follow the video frames, the ablation
without video attention never sees the video, and audio levels follow the video's."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm.config import load_config, section
from vdm.dit.audio import audio_times, audio_video_frames, cross_modal_masks
from vdm.dit.model import DiT
from vdm.generate.modes import block_causal_mask
from vdm.models import build_denoiser, count_params, denoiser_param_count
from vdm.train.objectives import audio_levels_and_weights, denoiser_loss

# 3 video latent frames of a 5-frame clip (td 2); 2 audio latent frames per pixel frame.
FRAMES, TD, PER_FRAME = 5, 2, 2
LATENTS, AUDIO = 3, FRAMES * PER_FRAME


def _inputs():
  r = jax.random.split(jax.random.key(0), 5)
  z = jax.random.normal(r[0], (2, LATENTS, 4, 4, 4))
  levels = jax.random.uniform(r[1], (2, LATENTS))
  text = jax.random.normal(r[2], (2, 6, 16))
  mask = jnp.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
  audio = jax.random.normal(r[3], (2, AUDIO, 3))
  audio_levels = jax.random.uniform(r[4], (2, AUDIO))
  return z, levels, text, mask, audio, audio_levels


def _dit(randomize=True, **options):
  model = DiT(latent_channels=4, text_width=16, width=32, depth=2, heads=4, patch=2,
              audio_channels=3, audio_per_frame=PER_FRAME, video_temporal_downsample=TD,
              rngs=nnx.Rngs(0), **options)
  if randomize:  # replace the zero (adaLN-zero) init so every path matters
    graphdef, params = nnx.split(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [0.2 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)]
    model = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
  return model


def test_audio_frames_map_to_the_video_frame_shown_at_their_time():
  frames = audio_video_frames(AUDIO, PER_FRAME, TD)
  # Pixel frames 0 | 1 2 | 3 4 -> latent frames 0 | 1 | 2, two audio latents each.
  np.testing.assert_array_equal(frames, [0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
  times = audio_times(AUDIO, PER_FRAME, TD)
  # The audio of pixel frame l * td starts at time l, the time of video latent frame l.
  assert times[PER_FRAME * TD] == 1.0 and times[2 * PER_FRAME * TD] == 2.0
  with pytest.raises(ValueError, match="whole video frames"):
    audio_video_frames(7, PER_FRAME, TD)
  causal = block_causal_mask(LATENTS, 1)
  audio_mask, from_video, to_video = cross_modal_masks(causal, frames)
  np.testing.assert_array_equal(audio_mask, causal[frames][:, frames])
  np.testing.assert_array_equal(from_video, causal[frames])
  np.testing.assert_array_equal(to_video, causal[:, frames])
  assert cross_modal_masks(None, frames) == (None, None, None)


def test_untrained_joint_dit_video_path_is_the_video_dit():
  """Built last and gated at zero, the audio stream leaves the video weights and output of the
  same seed exactly as a video DiT's."""
  joint = _dit(randomize=False)
  video = DiT(latent_channels=4, text_width=16, width=32, depth=2, heads=4, patch=2,
              rngs=nnx.Rngs(0))
  z, levels, text, mask, audio, audio_levels = _inputs()
  v_joint, v_audio = joint(z, levels, text, mask, audio=audio, audio_levels=audio_levels)
  np.testing.assert_array_equal(v_joint, video(z, levels, text, mask))
  np.testing.assert_array_equal(v_audio, 0.0)
  assert v_audio.shape == audio.shape


def test_block_causal_mask_makes_both_streams_causal():
  """Under a block-causal video mask, changing the last video latent frame, or the audio of its
  time, changes neither stream's earlier frames (and does change the later ones)."""
  model = _dit()
  z, levels, text, mask, audio, audio_levels = _inputs()
  causal = jnp.asarray(block_causal_mask(LATENTS, 1))
  base_v, base_a = model(z, levels, text, mask, causal, audio=audio, audio_levels=audio_levels)
  first_of_last = int(np.argmax(audio_video_frames(AUDIO, PER_FRAME, TD) == LATENTS - 1))
  for changed in (dict(z=z.at[:, -1].add(1.0)), dict(audio=audio.at[:, -1].add(1.0)),
                  dict(audio_levels=audio_levels.at[:, -1].set(0.9))):
    args = dict(z=z, audio=audio, audio_levels=audio_levels) | changed
    v, a = model(args["z"], levels, text, mask, causal, audio=args["audio"],
                 audio_levels=args["audio_levels"])
    np.testing.assert_allclose(v[:, :-1], base_v[:, :-1], atol=1e-5)
    np.testing.assert_allclose(a[:, :first_of_last], base_a[:, :first_of_last], atol=1e-5)
    assert not np.allclose(a[:, first_of_last:], base_a[:, first_of_last:], atol=1e-4)
  # Without the mask the audio of frame 0 hears the future video.
  _, a = model(z.at[:, -1].add(1.0), levels, text, mask, audio=audio, audio_levels=audio_levels)
  base_a = model(z, levels, text, mask, audio=audio, audio_levels=audio_levels)[1]
  assert not np.allclose(a[:, :first_of_last], base_a[:, :first_of_last], atol=1e-4)


def test_without_video_attention_the_audio_never_sees_the_video():
  model = _dit(audio_video_attention=False)
  z, levels, text, mask, audio, audio_levels = _inputs()
  v0, a0 = model(z, levels, text, mask, audio=audio, audio_levels=audio_levels)
  v1, a1 = model(z + 1.0, levels * 0.5, text, mask, audio=audio, audio_levels=audio_levels)
  np.testing.assert_allclose(a1, a0, atol=1e-6)  # neither the video latents nor its levels
  v2, _ = model(z, levels, text, mask, audio=audio + 1.0, audio_levels=audio_levels)
  np.testing.assert_allclose(v2, v0, atol=1e-6)  # and the video never hears the audio
  # With video attention both directions carry.
  joint = _dit()
  a_base = joint(z, levels, text, mask, audio=audio, audio_levels=audio_levels)[1]
  assert not np.allclose(joint(z + 1.0, levels, text, mask, audio=audio,
                               audio_levels=audio_levels)[1], a_base, atol=1e-4)


@pytest.mark.parametrize("arg", ["tiny", "tiny,no_video_attention"])
def test_joint_parameter_count_matches_the_formula(arg):
  config = load_config(f"configs/audio.py:{arg}")
  model = nnx.eval_shape(lambda: build_denoiser(config, 100))
  assert count_params(model) == denoiser_param_count(config, 100)


def test_audio_levels_follow_the_video_frames_and_given_streams_are_clean():
  frames = audio_video_frames(AUDIO, PER_FRAME, TD)
  levels = jax.random.uniform(jax.random.key(0), (4000, LATENTS))
  v, vw, a, aw = audio_levels_and_weights(jax.random.key(1), levels, None, frames,
                                          given_video_prob=0.2, given_audio_prob=0.3)
  v, vw, a, aw = (np.asarray(x) for x in (v, vw, a, aw))
  video_given = (vw == 0).all(1)
  audio_given = (aw == 0).all(1)
  assert not (video_given & audio_given).any()
  assert abs(video_given.mean() - 0.2) < 0.03 and abs(audio_given.mean() - 0.3) < 0.03
  assert (v[video_given] == 0).all() and (a[audio_given] == 0).all()
  both = ~video_given & ~audio_given
  np.testing.assert_array_equal(a[both], np.asarray(levels)[both][:, frames])
  np.testing.assert_array_equal(v[~video_given], np.asarray(levels)[~video_given])


def test_joint_loss_scores_both_streams_and_only_what_is_not_given():
  seen = []
  x0 = jax.random.normal(jax.random.key(0), (3, LATENTS, 4, 4, 4))
  a0 = jax.random.normal(jax.random.key(1), (3, AUDIO, 3))

  def model(z, levels, ids, mask, temporal_mask, frame_offset, audio, audio_levels):
    seen.append((np.asarray(levels), np.asarray(audio_levels), np.asarray(audio)))
    return jnp.zeros_like(z), jnp.zeros_like(audio)

  batch = dict(latents=x0, audio_latents=a0, ids=jnp.ones((3, 4), jnp.int32),
               mask=jnp.ones((3, 4), bool), empty_ids=jnp.ones((3, 4), jnp.int32),
               empty_mask=jnp.ones((3, 4), bool))
  audio = section("audio", enabled=True, given_video_prob=0.0, given_audio_prob=0.0,
                  loss_weight=0.5)
  loss, metrics = denoiser_loss(model, batch, jax.random.key(0), section("diffusion"),
                                audio=audio, audio_per_frame=PER_FRAME,
                                video_temporal_downsample=TD)
  levels, audio_levels, _ = seen[-1]
  np.testing.assert_array_equal(audio_levels, levels[:, audio_video_frames(AUDIO, PER_FRAME, TD)])
  # A zero velocity scores E|noise - x0|^2 per stream: about 1 + E x0^2 each.
  np.testing.assert_allclose(float(loss), float(metrics["flow_loss"])
                             + 0.5 * float(metrics["audio_flow_loss"]), rtol=1e-6)
  assert 1.5 < float(metrics["audio_flow_loss"]) < 2.5
  # All audio given: it is clean (level 0, x_t = x0) and unscored (loss 0 for it).
  audio = section("audio", enabled=True, given_video_prob=0.0, given_audio_prob=1.0)
  _, metrics = denoiser_loss(model, batch, jax.random.key(0), section("diffusion"),
                             audio=audio, audio_per_frame=PER_FRAME,
                             video_temporal_downsample=TD)
  _, audio_levels, audio_in = seen[-1]
  assert (audio_levels == 0).all() and float(metrics["audio_flow_loss"]) == 0.0
  np.testing.assert_allclose(audio_in, np.asarray(a0), atol=1e-6)


def test_pack_unpack_round_trip():
  from vdm.generate.joint import pack, unpack
  video = jax.random.normal(jax.random.key(0), (2, LATENTS, 4, 4, 4))
  audio = jax.random.normal(jax.random.key(1), (2, AUDIO, 3))
  frames = pack(video, audio)
  assert frames.shape == (2, LATENTS + AUDIO, 64)
  np.testing.assert_array_equal(frames[:, LATENTS:, 3:], 0.0)  # padding
  v, a = unpack(frames, video.shape[1:], audio.shape[1:])
  np.testing.assert_array_equal(v, video)
  np.testing.assert_array_equal(a, audio)


@pytest.mark.parametrize("mode", ["parallel", "autoregressive", "rolling", "keyframes_first"])
def test_every_mode_extends_to_sound(mode):
  """The joint matrix: audio columns copy their video frame's column (so chunk k's sound is made
  with chunk k's frames), a given stream is 0 in every row, and the modes' contract holds."""
  from vdm.generate.joint import joint_levels
  from vdm.generate.modes import generation_mode
  frames = audio_video_frames(AUDIO, PER_FRAME, TD)
  levels, _ = generation_mode(mode, steps=4, frames=LATENTS, chunk=1, shift=2.0)
  joint = joint_levels(levels, frames)
  assert joint.shape == (levels.shape[0], LATENTS + AUDIO)
  np.testing.assert_array_equal(joint[:, LATENTS:], levels[:, frames])
  assert (np.diff(joint, axis=0) <= 0).all() and (joint[-1] == 0).all()
  for given, zero, kept in (("video", slice(0, LATENTS), slice(LATENTS, None)),
                            ("audio", slice(LATENTS, None), slice(0, LATENTS))):
    pinned = joint_levels(levels, frames, given=given)
    assert (pinned[:, zero] == 0).all()
    np.testing.assert_array_equal(pinned[:, kept], joint[:, kept])
  with pytest.raises(ValueError, match="given"):
    joint_levels(levels, frames, given="both")

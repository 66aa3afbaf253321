"""What the denoiser stages train on, shared by the `t2v` task (vdm/train/run.py) and the
distillation task (vdm/train/distill.py): the captions of a dataset, and the host-side transform
of a clip batch into the denoiser's inputs."""
from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

from vdm.data import kinds
from vdm.data import simple
from vdm.data.captions import without_camera


def _grammar_corpus(config):
  # A kind without a grammar of its own, asked without its dataset, falls back to the spine's.
  return (kinds.DATA_KINDS[config.data.kind].caption_corpus
          or kinds.DATA_KINDS["simple"].caption_corpus)


def training_captions(config, builder=None, num: int = 20_000) -> list[str]:
  """The captions the tokenizer and the text pretraining learn from: `num` of the kind's caption
  grammar (the spine's), or the train captions of any other dataset
  (`vdm.data.dataset_tokenizer.train_captions`, all of them)."""
  if kinds.DATA_KINDS[config.data.kind].caption_corpus is not None or builder is None:
    return _grammar_corpus(config)(config.data.seed, num, "train")
  from vdm.data.dataset_tokenizer import train_captions
  return train_captions(builder)


def held_out_captions(config, builder=None, num: int = 1024) -> list[str]:
  """Captions never trained on: the spine grammar's held-out compositions, or the dataset's
  'test' split (none if it has no such split)."""
  if kinds.DATA_KINDS[config.data.kind].caption_corpus is not None or builder is None:
    return _grammar_corpus(config)(config.data.seed, num, "test")
  sources = builder.as_data_source()
  if "test" not in sources:
    return []
  return [r["caption"].decode() if isinstance(r["caption"], bytes) else str(r["caption"])
          for r in sources["test"]][:num]


def caption_batch_fn(tokenizer, max_length: int) -> Callable[[dict], dict]:
  """batch {'caption': [B] str, ...} -> {'ids', 'mask', 'empty_ids', 'empty_mask'} [B, L]: the
  prompt and the empty prompt (the unconditional branch of classifier-free guidance)."""
  empty_ids, empty_mask = tokenizer.encode([""], max_length)

  def prepare(batch):
    ids, mask = tokenizer.encode(list(batch["caption"]), max_length)
    n = len(ids)
    return dict(ids=ids, mask=mask, empty_ids=np.repeat(empty_ids, n, 0),
                empty_mask=np.repeat(empty_mask, n, 0))

  return prepare


def denoiser_batch_fn(config, encode, tokenizer, *, temporal_stride: int, spatial_stride: int,
                      latent_stats=None, text_cache=None,
                      encode_audio=None) -> Callable[[dict], dict]:
  """The denoiser stage's host-side batch transform (the `t2v` task's dit stage and the
  distillation recipes): clips -> the denoiser's inputs.

  'latents' [B, T', h, w, C]: a cached batch's latents normalised by latent_stats (its 'mean'
  and 'std'), else `encode(video)` (uint8 video [B, T, H, W, 3] -> normalised latents); the
  prompt and the empty prompt: with a `text_cache` (a frozen encoder's outputs,
  vdm/train/latent_cache.py) 'text', 'mask', 'empty_text', 'empty_mask', else
  `caption_batch_fn` ids (and, with control.camera_caption_dropout, 'camera_free_ids' /
  'camera_free_mask': the captions without their camera clause); the DiT's control inputs (`control_batch`); 'audio_latents' by
  `encode_audio` (a joint model); with diffusion.motion_supervision_weight the exact latent flow
  of the clip's ground truth ('latent_flow', 'flow_valid'); with control.prompt_switch_prob the
  clips of `prompt_switches` and the prompt after each switch ('switch_ids', 'switch_mask' [B, L],
  'switch_frame' int32 [B]: the first latent frame that reads it)."""
  captions = caption_batch_fn(tokenizer, config.text.max_length)
  switch_prob = config.control.prompt_switch_prob
  motion_weight = config.diffusion.motion_supervision_weight
  camera_free = config.control.camera and config.control.camera_caption_dropout > 0
  if latent_stats is not None:
    mean, std = np.asarray(latent_stats["mean"]), np.asarray(latent_stats["std"])

  def prepare_batch(batch):
    if switch_prob:  # before encoding: the switch is drawn in pixels
      video, after, switch_frame = prompt_switches(batch, switch_prob, temporal_stride,
                                                   seed=config.seed)
      batch = dict(batch, video=video)
    names = list(batch["caption"])
    n = len(names)
    latents = ((batch["latents"] - mean) / std if "latents" in batch and latent_stats is not None
               else encode(batch["video"]))
    if text_cache is not None:
      text, mask = text_cache.lookup(names)
      empty_text, empty_mask = text_cache.lookup([""])
      out = dict(latents=latents, text=text, mask=mask, empty_text=np.repeat(empty_text, n, 0),
                 empty_mask=np.repeat(empty_mask, n, 0))
    else:
      out = dict(latents=latents, **captions(batch))
      if camera_free:  # the loss picks these for some clips whose camera path is given
        out["camera_free_ids"], out["camera_free_mask"] = tokenizer.encode(
            [without_camera(name) for name in names], config.text.max_length)
      if switch_prob:
        out["switch_ids"], out["switch_mask"] = tokenizer.encode(after, config.text.max_length)
        out["switch_frame"] = switch_frame
    out.update(control_batch(config, batch))
    if encode_audio is not None:
      out["audio_latents"] = encode_audio(batch["audio"])
    if motion_weight:  # the exact flow on the latent grid, from the clip's ground truth
      height, width = config.data.height, config.data.width
      flows, valids = zip(*(simple.latent_motion(
          int(batch["shape"][i]), batch["center"][i], float(batch["radius"][i]), height, width,
          temporal_stride=temporal_stride, spatial_stride=spatial_stride)
          for i in range(n)))
      out.update(latent_flow=np.stack(flows), flow_valid=np.stack(valids))
    return out

  return prepare_batch


def control_batch(config, batch) -> dict:
  """The DiT's control inputs of a batch from its recorded paths (config.control on; the
  data kind records them): 'control_tokens' [B, T', N, F] from 'center' [B, T, K, 2] and
  'present' [B, K]; 'control_frames' [B, T', G] (or, control.camera_input = 'tokens',
  'control_camera_tokens' [B, T', N, E]) from 'camera' [B, T, 3]. Empty when off."""
  from vdm.config import spatial_stride
  from vdm.control import features
  c, out = config.control, {}
  if not (c.trajectory or c.camera):  # (a cached batch has latents, not the video)
    return out
  _, _, height, width, _ = batch["video"].shape
  td = config.vae.temporal_downsample
  if c.trajectory:
    centers = np.asarray(batch["center"], np.float64)[:, :, :c.objects]  # [B, T, K, 2]
    present = np.asarray(batch["present"])[:, :c.objects]
    paths = np.where(present[:, None, :, None], centers, np.nan).transpose(0, 2, 1, 3)
    out["control_tokens"] = np.stack([features.trajectory_tokens(
        p, height=height, width=width, stride=spatial_stride(config), temporal_downsample=td,
        objects=c.objects, sigma=c.sigma) for p in paths])
  if c.camera and c.camera_input == "tokens":
    out["control_camera_tokens"] = np.stack([features.camera_tokens(
        path, height=height, width=width, stride=spatial_stride(config), temporal_downsample=td)
        for path in batch["camera"]])
  elif c.camera:
    out["control_frames"] = np.stack([features.camera_frames(
        path, height=height, width=width, temporal_downsample=td) for path in batch["camera"]])
  return out


def prompt_switches(batch, prob: float, temporal_stride: int, *,
                    seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
  """Prompt switches drawn into a batch of 'simple' clips (control.prompt_switch_prob), so that
  a model learns to follow a prompt timeline: (video uint8 [B, T, H, W, 3], the caption after
  the switch [B], switch latent frame int32 [B]).

  With probability `prob` a clip switches at a latent frame k drawn from [1, T'): from video
  frame (k - 1) * temporal_stride + 1 on (the first frame latent k covers in the causal VAE) its
  object takes a colour that is neither its own nor the background's, and so does its caption.
  A clip that does not switch keeps its caption, with k = T'. The draw depends only on the clip
  (caption and path) and `seed`, so a resumed run sees the same batches.
  """
  video = np.asarray(batch["video"])
  n, frames = video.shape[:2]
  latent_frames = 1 + (frames - 1) // temporal_stride
  out, after = video.copy(), []
  switch_frame = np.full(n, latent_frames, np.int32)
  for i in range(n):
    caption = batch["caption"][i]
    caption = caption.decode() if isinstance(caption, bytes) else str(caption)
    key = zlib.crc32(caption.encode() + np.asarray(batch["center"][i], np.float32).tobytes())
    rng = np.random.default_rng([seed, key])
    after.append(caption)
    if rng.random() >= prob:
      continue
    old, background = int(batch["color"][i]), int(batch["background"][i])
    new = int(rng.choice([c for c in range(len(simple.COLORS)) if c not in (old, background)]))
    k = int(rng.integers(1, latent_frames))
    out[i] = simple.switch_color(video[i], old, new, (k - 1) * temporal_stride + 1)
    after[i] = simple.switched_caption(caption, old, new)
    switch_frame[i] = k
  return out, after, switch_frame

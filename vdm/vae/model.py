"""A small causal 3D convolutional VAE: the latent space the video diffusion model works in.

Layout is channels-last video `[B, T, H, W, C]`. Every layer is causal in time, so latent frame j
depends only on pixel frames <= j * temporal_downsample, and the first frame is encoded on its own
(an image is a 1-frame video; image-to-video conditioning and chunked decoding rely on this):

  pixel frames  T  = 1 + k * temporal_downsample
  latent frames T' = 1 + k

Spatial downsampling is one stride-2 step between consecutive `channel_mult` levels, so
`spatial_downsample = 2 ** (len(channel_mult) - 1)`. Temporal downsampling by 2 is folded into the
first log2(temporal_downsample) of those steps, so it needs at least that many levels.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

_LOGVAR_RANGE = (-30.0, 20.0)  # keeps exp(logvar) finite early in training
TEMPORAL_DOWNSAMPLES = (1, 2, 4, 8)  # each x2 is one stride-2 causal step


def _num_groups(channels: int) -> int:
  """Largest of 32, 16, ..., 1 that divides `channels` (GroupNorm needs an exact split)."""
  for g in (32, 16, 8, 4, 2, 1):
    if channels % g == 0:
      return g
  return 1


def _sub(cache: dict | None, *keys):
  """cache[k1][k2]..., or None at the start of a clip (no cache yet)."""
  for k in keys:
    if cache is None:
      return None
    cache = cache[k]
  return cache


def _same_pads(kernel: int, stride: int) -> tuple[int, int]:
  """'SAME' padding for a size divisible by `stride` (the VAE validates that up front)."""
  total = max(kernel - stride, 0)
  return total // 2, total - total // 2


# How a causal conv pads time at the clip start: 'replicate' copies frame 0 (vdm's), 'zeros'
# (Wan's), 'none' pads nothing (the conv starts at frame 0; a caller handles the first frames).
CAUSAL_PADDINGS = ("replicate", "zeros", "none")


class CausalConv3d(nnx.Module):
  """3D convolution over `[B, T, H, W, C]` that never looks at future frames.

  Time is padded only on the left with `kernel_t - 1` copies of the first frame (replicate rather
  than zeros, so a static clip looks static to the first frame too); space uses 'SAME' padding.
  With temporal stride 2 and kernel_t 3 the output keeps frame 0 on its own: output frame j sees
  input frames 2j-2 .. 2j, and T = 1 + 2k input frames give 1 + k output frames.

  Computed as a 2D conv over the `kernel_t` past frames stacked on channels: the same sums as a
  3D conv, but XLA:CPU runs its backward pass ~1.5x faster than a native 3D conv's.
  """

  def __init__(self, in_channels: int, out_channels: int, kernel_size=(3, 3, 3),
               strides=(1, 1, 1), *, padding: str = "replicate", rngs: nnx.Rngs):
    if padding not in CAUSAL_PADDINGS:
      raise ValueError(f"padding must be one of {CAUSAL_PADDINGS}, got {padding!r}")
    self.kernel_size = tuple(kernel_size)
    self.strides = tuple(strides)
    self.padding = padding
    # lecun_normal over fan_in = kt * kh * kw * Cin, the same init as nnx.Conv's default.
    init = nnx.initializers.lecun_normal()
    self.kernel = nnx.Param(init(rngs.params(), self.kernel_size + (in_channels, out_channels)))
    self.bias = nnx.Param(jnp.zeros((out_channels,)))

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, T, H, W, Cin] -> [B, T_out, H / s_h, W / s_w, Cout] (a whole clip)."""
    return self.step(x, None)[0]

  def step(self, x: jax.Array, cache: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """One chunk of a clip: (x [B, t, H, W, Cin], cache) -> (y [B, t_out, ...], new cache).

    `cache` holds the padded input frames the next output frame still needs (kernel_t - stride_t
    of them), or None at the start of the clip, where the causal padding (frame 0 replicated)
    stands in. Chunks after the first must have a multiple of stride_t frames; then the outputs
    of all chunks, concatenated, equal the whole-clip output.
    """
    kt, kh, kw = self.kernel_size
    st, sh, sw = self.strides
    if cache is not None:
      x = jnp.concatenate([cache, x], axis=1)
    elif kt > 1 and self.padding == "replicate":
      x = jnp.concatenate([jnp.repeat(x[:, :1], kt - 1, axis=1), x], axis=1)
    elif kt > 1 and self.padding == "zeros":
      x = jnp.concatenate([jnp.zeros_like(x[:, :1]).repeat(kt - 1, axis=1), x], axis=1)
    b, t_pad, h, w, cin = x.shape
    t_out = (t_pad - kt) // st + 1
    # What the next chunk's first output frame reads: padded frames from t_out * st on.
    # (Zero frames for a conv with kernel_t <= stride_t, e.g. 1x1x1: it keeps no state.)
    new_cache = x[:, t_out * st:]
    # Tap i of output frame j reads padded frame j * st + i.
    taps = [x[:, i:i + st * (t_out - 1) + 1:st] for i in range(kt)]
    x = jnp.concatenate(taps, axis=-1).reshape(b * t_out, h, w, kt * cin)
    kernel = self.kernel[...]
    kernel = kernel.transpose(1, 2, 0, 3, 4).reshape(kh, kw, kt * cin, -1)
    y = jax.lax.conv_general_dilated(
        x, kernel, (sh, sw), padding=(_same_pads(kh, sh), _same_pads(kw, sw)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = y + self.bias[...]
    return y.reshape((b, t_out) + y.shape[1:]), new_cache


class FrameGroupNorm(nnx.Module):
  """GroupNorm with statistics per frame: normalising over time would leak future frames."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.norm = nnx.GroupNorm(channels, num_groups=_num_groups(channels), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, T, H, W, C] -> same shape."""
    b, t = x.shape[:2]
    return self.norm(x.reshape((b * t,) + x.shape[2:])).reshape(x.shape)


class PixelRMSNorm(nnx.Module):
  """RMS over the channels of each position, then a learned scale and bias (the VAE norm of Wan
  2.1). Nothing is shared across positions, so a spatial tile of the frame is normalised exactly
  as in the whole frame: tiled decoding is exact beyond the convolutions' reach (vdm.vae.tiled)."""

  def __init__(self, channels: int, *, eps: float = 1e-6, bias: bool = True, rngs: nnx.Rngs):
    del rngs  # deterministic init: scale 1, bias 0
    self.eps = eps
    self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32)) if bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [..., C] -> same shape."""
    rms = jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.eps)
    y = x * rms * self.scale[...]
    return y if self.bias is None else y + self.bias[...]


def wan_rms_norm(channels: int, *, rngs: nnx.Rngs) -> PixelRMSNorm:
  """Wan's VAE norm: x / |x| * sqrt(C) * gamma over the channels, no bias (eps only guards 0)."""
  return PixelRMSNorm(channels, eps=1e-12, bias=False, rngs=rngs)


# vae.norm -> the normalisation every block uses. 'group': GroupNorm per frame (statistics over
# the frame: exact in temporal chunks, approximate in spatial tiles); 'rms': per position.
NORMS = {"group": FrameGroupNorm, "rms": PixelRMSNorm, "wan_rms": wan_rms_norm}
# vae.layout: 'vdm' (this file's encoder and decoder) or 'wan' (Wan2.1's: zero causal padding,
# per-frame spatial resampling with a separate temporal conv, attention in the middle blocks,
# 1x1x1 quant convs, the decoder's channel routing; see `Encoder` and `Decoder`).
LAYOUTS = ("vdm", "wan")


class FrameAttention(nnx.Module):
  """Single-head self-attention over the positions of each frame, with a residual (the middle
  block of Wan's VAE). Reads no other frame, so chunked coding needs no state for it."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.norm = wan_rms_norm(channels, rngs=rngs)
    self.qkv = nnx.Linear(channels, 3 * channels, rngs=rngs)
    self.proj = nnx.Linear(channels, channels, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, T, H, W, C] -> same shape."""
    b, t, h, w, c = x.shape
    q, k, v = jnp.split(self.qkv(self.norm(x)).reshape(b * t, h * w, 1, 3 * c), 3, axis=-1)
    y = jax.nn.dot_product_attention(q, k, v)
    return x + self.proj(y.reshape(b, t, h, w, c))


class ResBlock(nnx.Module):
  """Pre-activation residual block: (norm, SiLU, causal 3x3x3 conv) x 2, plus a shortcut."""

  def __init__(self, in_channels: int, out_channels: int, *, norm: str = "group",
               padding: str = "replicate", rngs: nnx.Rngs):
    self.norm1 = NORMS[norm](in_channels, rngs=rngs)
    self.conv1 = CausalConv3d(in_channels, out_channels, padding=padding, rngs=rngs)
    self.norm2 = NORMS[norm](out_channels, rngs=rngs)
    self.conv2 = CausalConv3d(out_channels, out_channels, padding=padding, rngs=rngs)
    # A 1x1x1 projection only where the width changes; otherwise the identity.
    self.shortcut = (CausalConv3d(in_channels, out_channels, (1, 1, 1), rngs=rngs)
                     if in_channels != out_channels else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, T, H, W, Cin] -> [B, T, H, W, Cout]."""
    return self.step(x, None)[0]

  def step(self, x: jax.Array, cache: dict | None) -> tuple[jax.Array, dict]:
    """Chunk x [B, t, H, W, Cin] -> ([B, t, H, W, Cout], cache); see `CausalConv3d.step`."""
    h, c1 = self.conv1.step(nnx.silu(self.norm1(x)), _sub(cache, "conv1"))
    h, c2 = self.conv2.step(nnx.silu(self.norm2(h)), _sub(cache, "conv2"))
    # The 1x1x1 shortcut reads no other frame, so it has no state.
    skip = x if self.shortcut is None else self.shortcut(x)
    return skip + h, dict(conv1=c1, conv2=c2)


class Downsample(nnx.Module):
  """Stride-2 causal conv: halves H and W, and optionally time (T = 1 + 2k -> 1 + k)."""

  def __init__(self, channels: int, *, temporal: bool, rngs: nnx.Rngs):
    self.conv = CausalConv3d(channels, channels, (3, 3, 3), (2 if temporal else 1, 2, 2),
                             rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, T, H, W, C] -> [B, T', H/2, W/2, C]."""
    return self.conv(x)

  def step(self, x: jax.Array, cache: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """Chunk x [B, t, H, W, C] -> ([B, t', H/2, W/2, C], cache). With temporal stride 2 a chunk
    after the first needs an even number of frames (1 + 2k -> 1 + k, then 2k -> k)."""
    return self.conv.step(x, cache)


class Upsample(nnx.Module):
  """Mirror of `Downsample`: (optionally) causal depth-to-time x2, then nearest x2 in space + conv.

  The temporal step predicts 2 frames per input frame from a causal conv and drops the first
  output, so latent frame 0 becomes 1 frame and later frames become 2: T = 1 + k -> 1 + 2k. It
  runs at the low resolution, and the width change happens in the high-resolution conv, because
  a wide conv at full resolution was the decoder's single most expensive layer.
  """

  def __init__(self, in_channels: int, out_channels: int, *, temporal: bool, rngs: nnx.Rngs):
    self.to_time = (CausalConv3d(in_channels, 2 * in_channels, rngs=rngs) if temporal else None)
    self.conv = CausalConv3d(in_channels, out_channels, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, T, H, W, Cin] -> [B, T'', 2H, 2W, Cout]."""
    return self.step(x, None)[0]

  def step(self, x: jax.Array, cache: dict | None) -> tuple[jax.Array, dict]:
    """Chunk x [B, t, H, W, Cin] -> ([B, t'', 2H, 2W, Cout], cache): at the clip start (cache
    None) t -> 1 + 2(t - 1), later t -> 2t; the dropped frame exists only before latent frame 0."""
    c_time = None
    if self.to_time is not None:
      b, t, h, w, c = x.shape
      x, c_time = self.to_time.step(x, _sub(cache, "to_time"))
      x = jnp.moveaxis(x.reshape(b, t, h, w, 2, c), 4, 2).reshape(b, 2 * t, h, w, c)
      if cache is None:
        x = x[:, 1:]
    x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)
    x, c_conv = self.conv.step(x, _sub(cache, "conv"))
    return x, dict(to_time=c_time, conv=c_conv)


class WanDownsample(nnx.Module):
  """Wan's downsampler: a per-frame stride-2 conv (zero pad right/bottom), then in temporal
  levels a (3, 1, 1) stride-2 conv over time that frame 0 bypasses: T = 1 + 2k -> 1 + k, output
  frame j >= 1 reading frames 2j-2 .. 2j."""

  def __init__(self, channels: int, *, temporal: bool, rngs: nnx.Rngs):
    self.spatial = CausalConv3d(channels, channels, (1, 3, 3), (1, 2, 2), rngs=rngs)
    self.time_conv = (CausalConv3d(channels, channels, (3, 1, 1), (2, 1, 1), padding="none",
                                   rngs=rngs) if temporal else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.step(x, None)[0]

  def step(self, x: jax.Array, cache: jax.Array | None) -> tuple[jax.Array, jax.Array | None]:
    """Chunk [B, t, H, W, C] -> ([B, t', H/2, W/2, C], the last frame seen by the time conv)."""
    x = self.spatial(x)
    if self.time_conv is None:
      return x, None
    seq = x if cache is None else jnp.concatenate([cache, x], axis=1)
    out = [x[:, :1]] if cache is None else []
    if seq.shape[1] >= 3:
      out.append(self.time_conv.step(seq, None)[0])
    return jnp.concatenate(out, axis=1), seq[:, -1:]


class WanUpsample(nnx.Module):
  """Wan's upsampler: in temporal levels a causal (3, 1, 1) conv (zero padded) doubles the
  channels into frames 2t, 2t+1 for every frame after frame 0 (frame 0 passes through:
  T = 1 + k -> 1 + 2k); then nearest x2 in space and a per-frame conv to `out_channels`."""

  def __init__(self, channels: int, out_channels: int, *, temporal: bool, rngs: nnx.Rngs):
    self.time_conv = (CausalConv3d(channels, 2 * channels, (3, 1, 1), padding="zeros", rngs=rngs)
                      if temporal else None)
    self.conv = CausalConv3d(channels, out_channels, (1, 3, 3), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.step(x, None)[0]

  def step(self, x: jax.Array, cache: dict | None) -> tuple[jax.Array, dict]:
    c_time = _sub(cache, "time_conv")
    if self.time_conv is not None:
      first, rest = (x[:, :1], x[:, 1:]) if cache is None else (None, x)
      pieces = [] if first is None else [first]
      if rest.shape[1]:
        b, t, h, w, c = rest.shape
        y, c_time = self.time_conv.step(rest, c_time)
        pieces.append(jnp.moveaxis(y.reshape(b, t, h, w, 2, c), 4, 2).reshape(b, 2 * t, h, w, c))
      x = jnp.concatenate(pieces, axis=1)
    x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)
    return self.conv(x), dict(time_conv=c_time)


def _temporal_levels(levels: int, num_temporal_downs: int, layout: str) -> list[bool]:
  """Which of the `levels - 1` downsamplers also halve time: vdm's first ones, Wan's last ones."""
  steps = range(levels - 1)
  if layout == "wan":
    return [i >= levels - 1 - num_temporal_downs for i in steps]
  return [i < num_temporal_downs for i in steps]


class Encoder(nnx.Module):
  """Video `[B, T, H, W, 3]` -> moments `[B, T', H/s, W/s, 2 * latent_channels]`."""

  def __init__(self, *, base_channels, channel_mult, latent_channels, num_temporal_downs,
               num_res_blocks, norm: str = "group", layout: str = "vdm", rngs: nnx.Rngs):
    widths = [base_channels * m for m in channel_mult]
    wan = layout == "wan"
    pad = "zeros" if wan else "replicate"
    norm = "wan_rms" if wan else norm
    self.conv_in = CausalConv3d(3, widths[0], padding=pad, rngs=rngs)
    blocks, downs = [], []
    prev = widths[0]
    temporal = _temporal_levels(len(widths), num_temporal_downs, layout)
    for i, w in enumerate(widths):
      for _ in range(num_res_blocks):
        blocks.append(ResBlock(prev, w, norm=norm, padding=pad, rngs=rngs))
        prev = w
      if i < len(widths) - 1:
        down = WanDownsample if wan else Downsample
        downs.append(down(w, temporal=temporal[i], rngs=rngs))
    self.blocks = nnx.List(blocks)
    self.downs = nnx.List(downs)
    self.num_res_blocks = num_res_blocks
    self.mid = ResBlock(prev, prev, norm=norm, padding=pad, rngs=rngs)
    # Wan's middle: residual block, attention within each frame, residual block.
    self.mid_attn = FrameAttention(prev, rngs=rngs) if wan else None
    self.mid2 = ResBlock(prev, prev, norm=norm, padding=pad, rngs=rngs) if wan else None
    self.norm_out = NORMS[norm](prev, rngs=rngs)
    self.conv_out = CausalConv3d(prev, 2 * latent_channels, padding=pad, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.step(x, None)[0]

  def step(self, x: jax.Array, cache: dict | None) -> tuple[jax.Array, dict]:
    """Pixel chunk [B, t, H, W, 3] -> (moments chunk, cache); whole clip = one step from None."""
    new = dict(blocks=[], downs=[])
    h, new["conv_in"] = self.conv_in.step(x, _sub(cache, "conv_in"))
    for i in range(len(self.downs) + 1):
      for j in range(self.num_res_blocks):
        k = i * self.num_res_blocks + j
        h, c = self.blocks[k].step(h, _sub(cache, "blocks", k))
        new["blocks"].append(c)
      if i < len(self.downs):
        h, c = self.downs[i].step(h, _sub(cache, "downs", i))
        new["downs"].append(c)
    h, new["mid"] = _middle(self, h, cache)
    h, new["conv_out"] = self.conv_out.step(nnx.silu(self.norm_out(h)), _sub(cache, "conv_out"))
    return h, new


def _middle(coder, h, cache):
  """The middle of an encoder or decoder: a residual block, or (Wan) residual, attention,
  residual; returns (h, its cache)."""
  h, c_mid = coder.mid.step(h, _sub(cache, "mid"))
  if coder.mid_attn is None:
    return h, c_mid
  h, c_mid2 = coder.mid2.step(coder.mid_attn(h), _sub(cache, "mid", "mid2"))
  return h, dict(c_mid, mid2=c_mid2)


class Decoder(nnx.Module):
  """Latents `[B, T', h, w, latent_channels]` -> video `[B, T, h*s, w*s, 3]`."""

  def __init__(self, *, base_channels, channel_mult, latent_channels, num_temporal_downs,
               num_res_blocks, norm: str = "group", layout: str = "vdm", rngs: nnx.Rngs):
    widths = [base_channels * m for m in channel_mult]
    wan = layout == "wan"
    pad = "zeros" if wan else "replicate"
    norm = "wan_rms" if wan else norm
    self.conv_in = CausalConv3d(latent_channels, widths[-1], padding=pad, rngs=rngs)
    self.mid = ResBlock(widths[-1], widths[-1], norm=norm, padding=pad, rngs=rngs)
    self.mid_attn = FrameAttention(widths[-1], rngs=rngs) if wan else None
    self.mid2 = ResBlock(widths[-1], widths[-1], norm=norm, padding=pad, rngs=rngs) if wan else None
    blocks, ups = [], []
    prev = widths[-1]
    temporal = _temporal_levels(len(widths), num_temporal_downs, layout)
    # Wan: one more residual block per level, and each upsampler halves the channels that the
    # next level's first residual block widens again.
    self.num_res_blocks = num_res_blocks + 1 if wan else num_res_blocks
    for i in reversed(range(len(widths))):
      for _ in range(self.num_res_blocks):
        blocks.append(ResBlock(prev, widths[i], norm=norm, padding=pad, rngs=rngs))
        prev = widths[i]
      if i > 0:
        # Undo the encoder step between levels i-1 and i, temporal where that one was.
        if wan:
          ups.append(WanUpsample(prev, prev // 2, temporal=temporal[i - 1], rngs=rngs))
          prev = prev // 2
        else:
          ups.append(Upsample(prev, widths[i - 1], temporal=temporal[i - 1], rngs=rngs))
          prev = widths[i - 1]
    self.blocks = nnx.List(blocks)
    self.ups = nnx.List(ups)
    self.norm_out = NORMS[norm](prev, rngs=rngs)
    self.conv_out = CausalConv3d(prev, 3, padding=pad, rngs=rngs)

  def __call__(self, z: jax.Array) -> jax.Array:
    return self.step(z, None)[0]

  def step(self, z: jax.Array, cache: dict | None) -> tuple[jax.Array, dict]:
    """Latent chunk [B, t, h, w, C] -> (frames chunk, cache); whole clip = one step from None."""
    new = dict(blocks=[], ups=[])
    h, new["conv_in"] = self.conv_in.step(z, _sub(cache, "conv_in"))
    h, new["mid"] = _middle(self, h, cache)
    for i in range(len(self.ups) + 1):
      for j in range(self.num_res_blocks):
        k = i * self.num_res_blocks + j
        h, c = self.blocks[k].step(h, _sub(cache, "blocks", k))
        new["blocks"].append(c)
      if i < len(self.ups):
        h, c = self.ups[i].step(h, _sub(cache, "ups", i))
        new["ups"].append(c)
    h, new["conv_out"] = self.conv_out.step(nnx.silu(self.norm_out(h)), _sub(cache, "conv_out"))
    return h, new


class CausalVAE(nnx.Module):
  """Causal 3D conv VAE over videos `[B, T, H, W, 3]` in [-1, 1].

  Args:
    base_channels: width of the first (full-resolution) level.
    channel_mult: width multiplier per level; `len(channel_mult) - 1` stride-2 spatial steps, so
      `spatial_downsample = 2 ** (len(channel_mult) - 1)`.
    latent_channels: channels per latent position.
    temporal_downsample: 1, 2, 4 or 8; T = 1 + k * temporal_downsample frames -> 1 + k latent
      frames (8: three temporal steps, the LTX-Video-style 8x compression).
    num_res_blocks: residual blocks per level, in the encoder and in the decoder.
    norm: 'group' (GroupNorm per frame) or 'rms' (per position; makes spatial tiling exact).
    layout: 'vdm' or 'wan' (Wan2.1's VAE: its norm, padding, resamplers, middle attention and
      1x1x1 quant convs; with channel_mult (1, 2, 4, 4), base 96, 16 latent channels,
      num_res_blocks 2 and temporal_downsample 4 it is Wan2.1_VAE's exact shape).
  """

  def __init__(self, *, base_channels: int, channel_mult: tuple[int, ...], latent_channels: int,
               temporal_downsample: int, num_res_blocks: int = 1, norm: str = "group",
               layout: str = "vdm", rngs: nnx.Rngs):
    if layout not in LAYOUTS:
      raise ValueError(f"vae.layout must be one of {LAYOUTS}, got {layout!r}")
    channel_mult = tuple(int(m) for m in channel_mult)
    if norm not in NORMS:
      raise ValueError(f"vae.norm must be one of {tuple(NORMS)}, got {norm!r}")
    if base_channels < 1:
      raise ValueError(f"base_channels must be >= 1, got {base_channels}")
    if not channel_mult or min(channel_mult) < 1:
      raise ValueError(f"channel_mult must be a non-empty tuple of ints >= 1, got {channel_mult}")
    if latent_channels < 1:
      raise ValueError(f"latent_channels must be >= 1, got {latent_channels}")
    if num_res_blocks < 1:
      raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
    if temporal_downsample not in TEMPORAL_DOWNSAMPLES:
      raise ValueError(f"temporal_downsample must be one of {TEMPORAL_DOWNSAMPLES}; "
                       f"got {temporal_downsample}")
    num_temporal_downs = int(math.log2(temporal_downsample))
    if num_temporal_downs > len(channel_mult) - 1:
      raise ValueError(
          f"temporal_downsample={temporal_downsample} needs len(channel_mult) >= "
          f"{num_temporal_downs + 1} (one spatial step per temporal x2), got {channel_mult}")
    self._spatial_downsample = 2 ** (len(channel_mult) - 1)
    self._temporal_downsample = int(temporal_downsample)
    self.latent_channels = latent_channels
    kwargs = dict(base_channels=base_channels, channel_mult=channel_mult,
                  latent_channels=latent_channels, num_temporal_downs=num_temporal_downs,
                  num_res_blocks=num_res_blocks, norm=norm, layout=layout, rngs=rngs)
    self.norm, self.layout = norm, layout
    self.encoder = Encoder(**kwargs)
    self.decoder = Decoder(**kwargs)
    if layout == "wan":
      z = latent_channels
      self.quant_conv = CausalConv3d(2 * z, 2 * z, (1, 1, 1), rngs=rngs)
      self.post_quant_conv = CausalConv3d(z, z, (1, 1, 1), rngs=rngs)
    else:
      self.quant_conv = self.post_quant_conv = None

  @classmethod
  def from_config(cls, cfg, *, rngs: nnx.Rngs) -> "CausalVAE":
    """Builds from the config's `vae` section (vdm/config/t2v.py documents each field)."""
    return cls(base_channels=cfg.base_channels, channel_mult=tuple(cfg.channel_mult),
               latent_channels=cfg.latent_channels, temporal_downsample=cfg.temporal_downsample,
               num_res_blocks=cfg.num_res_blocks, norm=cfg.norm, layout=cfg.layout, rngs=rngs)

  @property
  def spatial_downsample(self) -> int:
    return self._spatial_downsample

  @property
  def temporal_downsample(self) -> int:
    return self._temporal_downsample

  def latent_frames(self, num_frames: int) -> int:
    """Latent frames for `num_frames` pixel frames (which must be 1 + k * temporal_downsample)."""
    if num_frames < 1 or (num_frames - 1) % self._temporal_downsample:
      raise ValueError(
          f"num_frames must be 1 + k * temporal_downsample ({self._temporal_downsample}) "
          f"for k >= 0, got {num_frames}")
    return 1 + (num_frames - 1) // self._temporal_downsample

  def pixel_frames(self, num_latent_frames: int) -> int:
    """Pixel frames decoded from `num_latent_frames` latent frames."""
    if num_latent_frames < 1:
      raise ValueError(f"num_latent_frames must be >= 1, got {num_latent_frames}")
    return 1 + (num_latent_frames - 1) * self._temporal_downsample

  def _check_video(self, video: jax.Array) -> None:
    if video.ndim != 5 or video.shape[-1] != 3:
      raise ValueError(f"video must be [B, T, H, W, 3], got shape {video.shape}")
    self.latent_frames(video.shape[1])
    s = self._spatial_downsample
    for name, size in (("height", video.shape[2]), ("width", video.shape[3])):
      if size % s:
        raise ValueError(f"video {name} must be divisible by spatial_downsample={s}, got {size}")

  def encode(self, video: jax.Array) -> tuple[jax.Array, jax.Array]:
    """video: [B, T, H, W, 3] in [-1, 1] -> (mean, logvar), each [B, T', H/s, W/s, latent]."""
    self._check_video(video)
    moments = self._quant(self.encoder(video))
    mean, logvar = jnp.split(moments, 2, axis=-1)
    return mean, jnp.clip(logvar, *_LOGVAR_RANGE)

  def decode(self, z: jax.Array) -> jax.Array:
    """z: [B, T', h, w, latent] -> video [B, 1 + (T'-1) * temporal_downsample, h*s, w*s, 3].

    The output is unbounded (roughly [-1, 1]); clip before converting to pixels.
    """
    if z.ndim != 5 or z.shape[-1] != self.latent_channels:
      raise ValueError(f"z must be [B, T', h, w, {self.latent_channels}], got shape {z.shape}")
    return self.decoder(self._post_quant(z))

  def _quant(self, moments):
    return moments if self.quant_conv is None else self.quant_conv(moments)

  def _post_quant(self, z):
    return z if self.post_quant_conv is None else self.post_quant_conv(z)

  def encode_step(self, video: jax.Array, cache: dict | None
                  ) -> tuple[jax.Array, jax.Array, dict]:
    """Encodes one chunk of a long clip, carrying the causal convolutions' state.

    Args:
      video: [B, t, H, W, 3] in [-1, 1]; the first chunk (cache None) has 1 + k * td frames, every
        later one k * td frames (k >= 1), td = temporal_downsample, so chunks end on latent frames.
      cache: None at the start of the clip, else the cache the previous call returned.
    Returns:
      (mean, logvar, new cache), mean and logvar [B, t', H/s, W/s, latent]; concatenated over
      the chunks they equal `encode` of the whole clip.
    """
    td = self._temporal_downsample
    if cache is None:
      self._check_video(video)
    elif video.ndim != 5 or video.shape[1] < td or video.shape[1] % td:
      raise ValueError(f"a video chunk after the first must be [B, k * {td}, H, W, 3] with "
                       f"k >= 1 (temporal_downsample={td}), got shape {video.shape}")
    moments, cache = self.encoder.step(video, cache)
    moments = self._quant(moments)
    mean, logvar = jnp.split(moments, 2, axis=-1)
    return mean, jnp.clip(logvar, *_LOGVAR_RANGE), cache

  def decode_step(self, z: jax.Array, cache: dict | None) -> tuple[jax.Array, dict]:
    """Decodes one chunk of latent frames of a long clip, carrying the causal convolutions' state.

    Args:
      z: [B, t, h, w, latent], any t >= 1.
      cache: None at the start of the clip, else the cache the previous call returned.
    Returns:
      (frames, new cache): frames [B, 1 + (t - 1) * td, h*s, w*s, 3] for the first chunk (latent
      frame 0 decodes to one frame), [B, t * td, ...] after; concatenated over the chunks they
      equal `decode` of the whole clip. The cache's size is fixed by the model, not the clip.
    """
    if z.ndim != 5 or z.shape[-1] != self.latent_channels:
      raise ValueError(f"z must be [B, T', h, w, {self.latent_channels}], got shape {z.shape}")
    return self.decoder.step(self._post_quant(z), cache)

  def __call__(self, video: jax.Array, *, rng: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """video: [B, T, H, W, 3] -> (recon [B, T, H, W, 3], mean, logvar), sampling z ~ q(z | x)."""
    mean, logvar = self.encode(video)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)
    return self.decode(z), mean, logvar


def param_count(*, base_channels: int, channel_mult, latent_channels: int,
                temporal_downsample: int, num_res_blocks: int = 1) -> int:
  """Parameters of `CausalVAE(...)` with these arguments, by formula (no arrays are built).

  A k_t x k_h x k_w conv from a to b channels holds k_t k_h k_w a b + b; a GroupNorm 2c.
  """
  widths = [base_channels * int(m) for m in channel_mult]
  temporal_steps = int(math.log2(temporal_downsample))
  conv = lambda a, b, k=27: k * a * b + b
  norm = lambda c: 2 * c
  res = lambda a, b: (norm(a) + conv(a, b) + norm(b) + conv(b, b)
                      + (conv(a, b, 1) if a != b else 0))
  enc, prev = conv(3, widths[0]), widths[0]
  for i, w in enumerate(widths):
    for _ in range(num_res_blocks):
      enc, prev = enc + res(prev, w), w
    if i < len(widths) - 1:
      enc += conv(w, w)  # Downsample
  enc += res(prev, prev) + norm(prev) + conv(prev, 2 * latent_channels)
  dec, prev = conv(latent_channels, widths[-1]) + res(widths[-1], widths[-1]), widths[-1]
  for i in reversed(range(len(widths))):
    for _ in range(num_res_blocks):
      dec, prev = dec + res(prev, widths[i]), widths[i]
    if i > 0:  # Upsample: depth-to-time conv where the encoder stepped in time, then the conv
      dec += (conv(prev, 2 * prev) if i - 1 < temporal_steps else 0) + conv(prev, widths[i - 1])
      prev = widths[i - 1]
  dec += norm(prev) + conv(prev, 3)
  return enc + dec

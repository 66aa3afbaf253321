"""Autoregressive and rolling generation chunk by chunk with a KV cache, in bounded memory.

This is the `autoregressive` noise-level matrix (`vdm.generate.modes.autoregressive_levels`)
executed one chunk at a time: chunk c is denoised from level 1 to the context level while earlier
chunks are read from the cache, then one more pass at the context level gives both the chunk's
keys/values for the cache and its clean frames (x - c v: the matrix's last Euler step). As in the
matrix, the last chunk's own last step goes straight to level 0. The result
equals the full-matrix sampler with a block-causal mask (tests/test_streaming.py), at a cost per
chunk that does not grow with the clip when the cache is a ring buffer.

`generate_rolling` runs the `rolling` matrix (`vdm.generate.modes.rolling_levels`) the same way:
at sampler step r the chunks in flight (started, not finished: at most `steps` of them) are one
window of fixed size, denoised one row further while they attend each other block-causally and
the finished chunks through the cache; the chunk that has just finished is run once alone to put
its keys and values in the cache and to emit its clean frames. Memory is the window plus the
cache, whatever the clip's length.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vdm.diffusion.samplers import MULTISTEP_SAMPLERS, sample
from vdm.generate.kv_cache import KVCache, clear, write_frames
from vdm.generate.modes import MODES, allowed_chunks, chunk_bounds, chunk_ids, shifted_grid_from

# (params, x [B, k, ...], t [B, k], cache, frame_offset[, frame_mask]) -> (velocity [B, k, ...],
# (keys, values)); frame_mask [k, slots + k] (rolling's window of several chunks) is optional.
# params are passed in (not closed over) so jit does not bake the weights into the program.
ChunkVelocity = Callable[..., tuple[jax.Array, tuple[jax.Array, jax.Array]]]


@functools.lru_cache(maxsize=32)  # one compiled step per (model function, schedule, sampler)
def make_chunk_step(chunk_velocity: ChunkVelocity, *, steps: int, context_level: float,
                    shift: float = 1.0, sampler: str = "euler", on_step=None,
                    spacing: str | tuple = "linear"):
  """Returns step(params, x_noise [B, k, ...], cache, frame_offset, rng, last) -> (x, cache).

  Shapes are static (the chunk and the cache), so one compilation serves every chunk; `last`
  (the final chunk, whose own last step ends at 0) is a traced flag, not a recompilation.
  on_step(i): a host function called at each sampler step of a chunk (`samplers.sample`); it is
  part of the cache key, so pass one long-lived function, not a new closure per call.
  """
  turn = jnp.asarray(shifted_grid_from(context_level, steps, shift=shift, spacing=spacing),
                     jnp.float32)

  @jax.jit
  def step(params, x, cache: KVCache, frame_offset, rng, last):
    def velocity(x_chunk, t, **conditions):  # conditions: the shortcut sampler's step size
      return chunk_velocity(params, x_chunk, t, cache, frame_offset, **conditions)[0]

    end = jnp.where(last, 0.0, context_level)
    levels = jnp.broadcast_to(turn.at[-1].set(end)[:, None], (turn.shape[0], x.shape[1]))
    x = sample(sampler, velocity, x, levels, rng=rng, on_step=on_step)
    v, (k, v_cache) = chunk_velocity(params, x, jnp.full(x.shape[:2], end), cache, frame_offset)
    return x - end * v, write_frames(cache, k, v_cache, frame_offset)

  return step


def generate_autoregressive(chunk_velocity: ChunkVelocity, params, noise: jax.Array,
                            cache: KVCache, *,
                            chunk: int, steps: int, context_level: float = 0.0,
                            shift: float = 1.0, sampler: str = "euler", rng=None,
                            first_frame: int = 0, spacing: str | tuple = "linear",
                            on_chunk: Callable[[int, jax.Array], None] | None = None,
                            on_step: Callable[[jax.Array], None] | None = None,
                            params_of_chunk: Callable[[int], object] | None = None,
                            switches=None):
  """Generates noise.shape[1] frames in chunks of `chunk`; returns latents like `noise`.

  Args:
    chunk_velocity: the model on one chunk given the cache (e.g. `DiT.forward_cached` with guidance).
    params: what chunk_velocity needs as its first argument (e.g. an nnx.State).
    noise: [B, T, ...] initial noise; chunks as in `vdm.generate.modes.chunk_ids` (T a multiple
      of chunk, or frame 0 alone and then T - 1 a multiple of chunk).
    cache: a `KVCache` whose slots bound how many earlier frames each chunk sees; empty, or
      holding `first_frame` frames written by `prefill` (extending a clip).
    first_frame: position of noise's frame 0 in the whole clip (the number of prefilled frames).
    spacing: the time grid's spacing, or the steps' levels given outright
      (`vdm.generate.modes.time_grid`).
    on_chunk: called with (first frame index, clean chunk) as each chunk finishes (streaming).
    on_step: called with the sampler step index at each step of each chunk (as in
      `make_chunk_step`).
    params_of_chunk: c -> the params of chunk c (a prompt timeline: each chunk its own prompt
      and control inputs); None: `params` for every chunk.
    switches: per chunk, what happens to the cache before it (`vdm.control.timeline`): '' or
      'keep' nothing; 'recache' the cached frames are re-encoded under the chunk's params from
      the clean frames generated so far (LongLive's recache); 'cut' the cache is emptied.
  """
  step = make_chunk_step(chunk_velocity, steps=steps, context_level=context_level, shift=shift,
                         sampler=sampler, on_step=on_step, spacing=spacing)
  rng = jax.random.key(0) if rng is None else rng
  out = []
  bounds = chunk_bounds(noise.shape[1], chunk)
  slots = cache.valid.shape[0]
  for c, (start, stop) in enumerate(bounds):
    offset = first_frame + start
    chunk_params = params if params_of_chunk is None else params_of_chunk(c)
    switch = switches[c] if switches is not None else ""
    if switch == "cut":
      cache = clear(cache)
    elif switch == "recache" and out:
      context = jnp.concatenate(out, axis=1)[:, -slots:]
      n = context.shape[1]  # whole chunks when the window holds them, else frame by frame
      cache = prefill(chunk_velocity, chunk_params, context, clear(cache),
                      chunk=chunk if chunk in allowed_chunks(n) else 1,
                      context_level=context_level, first_frame=offset - context.shape[1],
                      rng=jax.random.fold_in(rng, (1 << 20) + c))
    elif switch not in ("", "keep", "recache"):
      raise ValueError(f"switch {switch!r}: allowed '', 'keep', 'recache', 'cut'")
    x, cache = step(chunk_params, noise[:, start:stop], cache, jnp.int32(offset),
                    jax.random.fold_in(rng, c), jnp.bool_(c == len(bounds) - 1))
    if on_chunk is not None:
      on_chunk(offset, x)
    out.append(x)
  return jnp.concatenate(out, axis=1)


@functools.partial(jax.jit, static_argnums=0)
def _prefill_step(chunk_velocity, params, x, cache, frame_offset, level):
  _, (k, v) = chunk_velocity(params, x, jnp.full(x.shape[:2], level), cache, frame_offset)
  return write_frames(cache, k, v, frame_offset)


def prefill(chunk_velocity: ChunkVelocity, params, context: jax.Array, cache: KVCache, *,
            chunk: int, context_level: float = 0.0, rng=None, first_frame: int = 0) -> KVCache:
  """Writes the keys/values of given clean latents context [B, n, ...] into the cache.

  The context is seen as generated chunks are: at `context_level` (re-noised once with fresh
  noise when > 0), chunk by chunk (`chunk_ids` chunking), each chunk attending the earlier ones.
  first_frame: the position of context's frame 0 in the whole clip (re-encoding frames that
  were generated after others, e.g. at a prompt switch).
  """
  if context_level > 0:
    noise = jax.random.normal(jax.random.key(0) if rng is None else rng, context.shape)
    context = (1.0 - context_level) * context + context_level * noise
  for start, stop in chunk_bounds(context.shape[1], min(chunk, context.shape[1])):
    cache = _prefill_step(chunk_velocity, params, context[:, start:stop], cache,
                          jnp.int32(first_frame + start), jnp.float32(context_level))
  return cache


def streams(mode: str, *, sampler: str, kv_cache: bool = True, image=None) -> bool:
  """Whether a request of `mode` runs as a stream here (KV cache, bounded memory, up to
  `sample.max_stream_frames`): a streaming mode (`Mode.streams`), with the cache, without a
  given image, and for rolling a sampler that needs no history across rows."""
  spec = MODES[mode]
  return (spec.streams and kv_cache and image is None
          and not (mode == "rolling" and sampler in MULTISTEP_SAMPLERS))


@functools.lru_cache(maxsize=32)
def _rolling_steps(chunk_velocity: ChunkVelocity, sampler: str):
  """(window step, finishing call), both jitted once per (model function, sampler)."""

  @jax.jit
  def window_step(params, x, levels, cache, frame_offset, frame_mask, rng):
    def velocity(x_window, t):
      return chunk_velocity(params, x_window, t, cache, frame_offset, frame_mask)[0]
    return sample(sampler, velocity, x, levels, rng=rng)

  @jax.jit
  def finish(params, x, level, cache, frame_offset):
    v, (k, v_cache) = chunk_velocity(params, x, jnp.full(x.shape[:2], level), cache,
                                     frame_offset)
    return x - level * v, write_frames(cache, k, v_cache, frame_offset)

  return window_step, finish


def rolling_window_mask(first: int, size: int, ids: np.ndarray, starts: np.ndarray, slots: int,
                        window: int, offset: int = 0) -> np.ndarray:
  """The attention of a rolling window: [size, slots + size] bool for the window's frames
  first .. first + size - 1 (frames past the clip are padding), over the cache's slots (a ring
  buffer holding the `slots` frames before `first`) and the window itself.

  Frame i sees what `vdm.generate.modes.sliding_window_mask` lets it see: frames of its own and
  earlier chunks that are at most `window` frames before its chunk's start. ids [T]: chunk of
  each frame; starts [T]: first frame of each frame's chunk; offset: frames before frame 0
  (prefilled context), which sit in the cache at slot (offset + position) mod slots."""
  frames = len(ids)
  pos = first + np.arange(size)
  real = pos < frames
  inside = np.minimum(pos, frames - 1)
  chunk = np.where(real, ids[inside], ids[-1] + 1 + np.arange(size))  # padding: later, alone
  lowest = np.where(real, starts[inside] - window, pos)
  # The newest frame before `first` in each slot, as a position of the whole stream.
  newest = offset + first - 1 - (offset + first - 1 - np.arange(slots)) % slots
  sees_cache = ((newest[None, :] - offset >= lowest[:, None]) & (newest[None, :] >= 0)
                & real[:, None])
  sees_window = (chunk[None, :] <= chunk[:, None]) & (pos[None, :] >= lowest[:, None])
  return np.concatenate([sees_cache, sees_window], axis=1)


def generate_rolling(chunk_velocity: ChunkVelocity, params, noise: jax.Array, cache: KVCache,
                     *, chunk: int, steps: int, window: int, context_level: float = 0.0,
                     shift: float = 1.0, sampler: str = "euler", rng=None,
                     first_frame: int = 0,
                     on_chunk: Callable[[int, jax.Array], None] | None = None):
  """The `rolling` noise-level matrix run as a stream; returns latents like `noise`.

  Equals the matrix sampler over the whole clip under `sliding_window_mask(frames, chunk,
  window)` (tests/test_streaming.py) while running only the chunks in flight and a cache of
  `window` frames. Samplers that keep a history across steps (MULTISTEP_SAMPLERS) cannot run
  row by row and are refused.

  Args:
    chunk_velocity: the model on a window given the cache (`ChunkVelocity`, with frame_mask).
    noise: [B, T, ...] initial noise (`chunk_ids` chunking of its T frames).
    cache: a `KVCache` with `window` slots: empty, or holding `first_frame` frames written by
      `prefill` (extending a clip; noise's frame 0 is then frame `first_frame` of the whole).
    on_chunk: called with (first frame index, clean chunk) as each chunk finishes, in order.
  """
  if sampler in MULTISTEP_SAMPLERS:
    raise ValueError(f"rolling generation streams row by row; sampler {sampler!r} keeps a "
                     "history across rows: use one of the others")
  if cache.valid.shape[0] != window:
    raise ValueError(f"the cache has {cache.valid.shape[0]} slots; rolling needs window={window}")
  window_step, finish = _rolling_steps(chunk_velocity, sampler)
  rng = jax.random.key(0) if rng is None else rng
  frames = noise.shape[1]
  ids = chunk_ids(frames, chunk)
  bounds = chunk_bounds(frames, chunk)
  starts = np.array([bounds[c][0] for c in ids])
  n = len(bounds)
  turn = shifted_grid_from(context_level, steps, shift=shift).astype(np.float32)
  size = min(steps * chunk, frames)  # the frames of `steps` chunks: all those in flight
  rows = steps + n  # as rolling_levels: sampler steps r = 0 .. rows - 2
  # The clip's latents, updated as rows finish: small next to the model's activations.
  x = np.array(noise)
  padded = np.zeros((x.shape[0], frames + size) + x.shape[2:], x.dtype)
  for r in range(rows - 1):
    done = r - steps  # the chunk that has just reached the context level, if any
    if done >= 0:
      start, stop = bounds[done]
      clean, cache = finish(params, jnp.asarray(x[:, start:stop]), jnp.float32(context_level),
                            cache, jnp.int32(first_frame + start))
      x[:, start:stop] = np.asarray(clean)
      if on_chunk is not None:
        on_chunk(first_frame + start, clean)
    first = bounds[max(0, r - steps + 1)][0]
    pos = first + np.arange(size)
    real = pos < frames
    k = ids[np.minimum(pos, frames - 1)]
    now = np.where(real, turn[np.clip(r - k, 0, steps)], 1.0)
    after = np.where(real, turn[np.clip(r + 1 - k, 0, steps)], 1.0)
    if r == rows - 2:  # the matrix's last row: every frame at 0
      after = np.where(real, 0.0, 1.0)
    padded[:, :frames] = x
    out = window_step(params, jnp.asarray(padded[:, first:first + size]),
                      jnp.asarray(np.stack([now, after]).astype(np.float32)), cache,
                      jnp.int32(first_frame + first),
                      jnp.asarray(rolling_window_mask(first, size, ids, starts, window, window,
                                                      offset=first_frame)),
                      jax.random.fold_in(rng, r))
    stop = min(first + size, frames)
    x[:, first:stop] = np.asarray(out)[:, :stop - first]
  start, stop = bounds[-1]
  if on_chunk is not None:
    on_chunk(first_frame + start, jnp.asarray(x[:, start:stop]))
  return jnp.asarray(x)

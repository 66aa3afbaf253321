"""Autoregressive generation chunk by chunk with a KV cache.

This is the `autoregressive` noise-level matrix (`vdm.generate.modes.autoregressive_levels`)
executed one chunk at a time: chunk c is denoised from level 1 to the context level while earlier
chunks are read from the cache, then one more pass at the context level gives both the chunk's
keys/values for the cache and its clean frames (x - c v: the matrix's last Euler step). As in the
matrix, the last chunk's own last step goes straight to level 0. The result
equals the full-matrix sampler with a block-causal mask (tests/test_streaming.py), at a cost per
chunk that does not grow with the clip when the cache is a ring buffer.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vdm.diffusion.samplers import sample
from vdm.generate.kv_cache import KVCache, clear, write_frames
from vdm.generate.modes import allowed_chunks, chunk_bounds, chunk_ids, shifted_grid_from

# (params, x [B, k, ...], t [B, k], cache, frame_offset) -> (velocity [B, k, ...], (keys, values));
# params are passed in (not closed over) so jit does not bake the weights into the program.
ChunkVelocity = Callable[..., tuple[jax.Array, tuple[jax.Array, jax.Array]]]


@functools.lru_cache(maxsize=32)  # one compiled step per (model function, schedule, sampler)
def make_chunk_step(chunk_velocity: ChunkVelocity, *, steps: int, context_level: float,
                    shift: float = 1.0, sampler: str = "euler", on_step=None,
                    schedule: tuple = ()):
  """Returns step(params, x_noise [B, k, ...], cache, frame_offset, rng, last) -> (x, cache).

  Shapes are static (the chunk and the cache), so one compilation serves every chunk; `last`
  (the final chunk, whose own last step ends at 0) is a traced flag, not a recompilation.
  on_step(i): a host function called at each sampler step of a chunk (`samplers.sample`); it is
  part of the cache key, so pass one long-lived function, not a new closure per call.
  schedule: a distilled model's own levels (`vdm.generate.modes.schedule_grid`; () the shifted
  grid).
  """
  turn = jnp.asarray(shifted_grid_from(context_level, steps, shift=shift, schedule=schedule),
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
                            first_frame: int = 0,
                            on_chunk: Callable[[int, jax.Array], None] | None = None,
                            on_step: Callable[[jax.Array], None] | None = None,
                            params_of_chunk: Callable[[int], object] | None = None,
                            switches=None, schedule: tuple = ()):
  """Generates noise.shape[1] frames in chunks of `chunk`; returns latents like `noise`.

  Args:
    chunk_velocity: the model on one chunk given the cache (e.g. `DiT.forward_cached` with guidance).
    params: what chunk_velocity needs as its first argument (e.g. an nnx.State).
    noise: [B, T, ...] initial noise; chunks as in `vdm.generate.modes.chunk_ids` (T a multiple
      of chunk, or frame 0 alone and then T - 1 a multiple of chunk).
    cache: a `KVCache` whose slots bound how many earlier frames each chunk sees; empty, or
      holding `first_frame` frames written by `prefill` (extending a clip).
    first_frame: position of noise's frame 0 in the whole clip (the number of prefilled frames).
    on_chunk: called with (first frame index, clean chunk) as each chunk finishes (streaming).
    on_step: called with the sampler step index at each step of each chunk (as in
      `make_chunk_step`).
    params_of_chunk: c -> the params of chunk c (a prompt timeline: each chunk its own prompt
      and control inputs); None: `params` for every chunk.
    switches: per chunk, what happens to the cache before it (`vdm.control.timeline`): '' or
      'keep' nothing; 'recache' the cached frames are re-encoded under the chunk's params from
      the clean frames generated so far (LongLive's recache); 'cut' the cache is emptied.
    schedule: a distilled model's own levels (see `make_chunk_step`).
  """
  step = make_chunk_step(chunk_velocity, steps=steps, context_level=context_level, shift=shift,
                         sampler=sampler, on_step=on_step, schedule=tuple(schedule))
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

"""Wan2.1 in vdm: parity with the reference implementations' own random weights at tiny configs.

The fixtures in tests/fixtures/wan come from tools/wan_parity.py (diffusers' WanTransformer3DModel
and AutoencoderKLWan, transformers' UMT5EncoderModel; `make wan-fixtures`): the weights in both
public layouts and the reference outputs, fp32 on CPU. Nothing here needs torch.
"""
import functools
import os
import pickle
import zipfile

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from vdm.convert.assemble import materialize, param_names
from vdm.convert.readers import UnsafeCheckpointError, open_weights, read_pth
from vdm.convert.wan import (detect_layout, dit_dims, dit_recipes, open_component,
                             rope_permutation, umt5_recipes)
from vdm.dit.layers import apply_rope, rope3d_angles
from vdm.dit.model import DiT
from vdm.generate.modes import block_causal_mask
from vdm.text.encoder import T5Encoder

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "wan")
ROOTS = {"diffusers": os.path.join(FIXTURES, "diffusers"),
         "original": os.path.join(FIXTURES, "original")}


@pytest.fixture(scope="module")
def io():
  with np.load(os.path.join(FIXTURES, "io.npz")) as f:
    return {k: f[k] for k in f.files}


def relative_error(out, ref, what: str = "") -> float:
  """max |out - ref| / max |ref|; printed as `parity WHAT: ...` when `what` is given (the figures
  in docs/wan.md: `pytest tests/test_wan.py -s | grep parity`)."""
  error = float(np.abs(np.asarray(out) - ref).max() / np.abs(ref).max())
  if what:
    print(f"parity {what}: {error:.1e} relative")
  return error


def absolute_error(out, ref, what: str) -> float:
  """max |out - ref|, printed as `parity WHAT: ...`."""
  error = float(np.abs(np.asarray(out) - ref).max())
  print(f"parity {what}: {error:.1e} absolute")
  return error


def jitted(module: nnx.Module, method: str = "__call__"):
  """module.method(*args) compiled once per input shape, the weights passed as arguments."""
  graphdef, state = nnx.split(module)
  call = jax.jit(lambda state, *args: getattr(nnx.merge(graphdef, state), method)(*args))
  return functools.partial(call, state)


def tiny_dit():
  dims = dit_dims(ROOTS["diffusers"], "diffusers")
  return DiT(latent_channels=dims["in_channels"], text_width=dims["text_dim"],
             width=dims["heads"] * dims["head_dim"], depth=dims["layers"], heads=dims["heads"],
             patch=2, attention="full", position="rope3d", qk_norm=True, qk_norm_over="width",
             cross_norm=True, modulation="table", time_freq_dim=dims["freq_dim"],
             text_embed="mlp", cross_mask=False, mlp_width=dims["ffn_dim"], rngs=nnx.Rngs(0))


@functools.cache  # each layout read and built once per session
def load_dit(layout: str) -> DiT:
  dims = dit_dims(ROOTS[layout], layout)
  recipes = dit_recipes(open_component(ROOTS[layout], layout, "transformer"),
                        depth=dims["layers"], width=dims["heads"] * dims["head_dim"],
                        head_dim=dims["head_dim"])
  return materialize(nnx.eval_shape(tiny_dit), recipes)


def tiny_umt5():
  return T5Encoder(vocab_size=160, width=24, depth=2, heads=6, mlp=40, position_bias="per_layer",
                   rngs=nnx.Rngs(0))


@functools.cache
def load_umt5(layout: str, dtype=None) -> T5Encoder:
  recipes = umt5_recipes(open_component(ROOTS[layout], layout, "text_encoder"), depth=2,
                         head_dim=4)
  return materialize(nnx.eval_shape(tiny_umt5), recipes, dtype=dtype)


def dit_inputs(io):
  """vdm's channels-last latents [B, T, h, w, C] and the text (no padding: mask all True)."""
  x = jnp.asarray(io["dit_x"]).transpose(0, 2, 3, 4, 1)
  text = jnp.asarray(io["dit_text"])
  return x, text, jnp.ones(text.shape[:2], bool)


def channels_last(a):
  return np.asarray(a).transpose(0, 2, 3, 4, 1)


def test_layouts_are_detected():
  assert detect_layout(ROOTS["diffusers"]) == "diffusers"
  assert detect_layout(ROOTS["original"]) == "original"
  assert detect_layout(os.path.dirname(__file__)) is None


@functools.cache
def dit_forward():
  """The diffusers-layout fixture DiT, jitted once: (x, levels, text, mask, temporal_mask)."""
  return jitted(load_dit("diffusers"))


def everything(frames: int):
  """A temporal mask under which every frame sees every frame (the DiT's default, None)."""
  return jnp.ones((frames, frames), bool)


def test_dit_matches_diffusers_at_a_shared_timestep(io):
  x, text, mask = dit_inputs(io)
  t = np.full(x.shape[:2], io["dit_t_shared"] / 1000, np.float32)
  out = dit_forward()(x, t, text, mask,
                      everything(x.shape[1]))
  assert relative_error(out, channels_last(io["dit_out_shared"]), "DiT shared timestep") < 1e-5


def test_dit_matches_diffusers_with_a_timestep_per_frame(io):
  x, text, mask = dit_inputs(io)
  out = dit_forward()(x, jnp.asarray(io["dit_t_frames"]) / 1000, text, mask,
                      everything(x.shape[1]))
  assert relative_error(out, channels_last(io["dit_out_frames"]), "DiT per-frame timesteps") < 1e-5


def test_dit_block_causal_matches_diffusers_under_the_same_mask(io):
  """diffusers' own attention with a block-causal mask (chunks of 3 latent frames) injected."""
  x, text, mask = dit_inputs(io)
  out = dit_forward()(x, jnp.asarray(io["dit_t_frames"]) / 1000, text, mask,
                      jnp.asarray(block_causal_mask(x.shape[1], 3)))
  assert relative_error(out, channels_last(io["dit_out_block_causal"]),
                        "DiT block-causal") < 1e-5
  # ... and its first chunk is diffusers' full attention run on those 3 frames alone, not what
  # the same frames give when they see the whole clip.
  first = channels_last(io["dit_out_first_chunk"])
  assert relative_error(out[:, :3], first, "DiT first chunk alone") < 1e-5
  assert relative_error(out[:, :3], channels_last(io["dit_out_frames"])[:, :3]) > 1e-3


def test_both_dit_layouts_load_the_same_parameters():
  a, b = (nnx.state(load_dit(layout), nnx.Param) for layout in ("diffusers", "original"))
  names = param_names(load_dit("diffusers"))
  flat_a, flat_b = dict(nnx.to_flat_state(a)), dict(nnx.to_flat_state(b))
  assert flat_a.keys() == flat_b.keys() and len(names) == len(flat_a)
  for path in flat_a:
    np.testing.assert_array_equal(flat_a[path].get_value(), flat_b[path].get_value())


def test_umt5_matches_transformers(io):
  out = jitted(load_umt5("diffusers"))(io["umt5_ids"], io["umt5_mask"])
  assert relative_error(out, io["umt5_hidden"], "UMT5") < 1e-5


def test_the_released_bf16_umt5_loads_as_bf16_with_the_same_parameters():
  """models_t5_umt5-xxl-enc-bf16.pth is bf16: it stays bf16 and equals the fp32 diffusers-layout
  weights rounded to bf16 (the queries scaled by sqrt(d) = 2, exact in bf16)."""
  fp32 = dict(nnx.to_flat_state(nnx.state(load_umt5("diffusers"), nnx.Param)))
  bf16 = dict(nnx.to_flat_state(nnx.state(load_umt5("original"), nnx.Param)))
  assert fp32.keys() == bf16.keys()
  for path, var in bf16.items():
    assert var.get_value().dtype == jnp.bfloat16, path
    np.testing.assert_array_equal(
        np.asarray(var.get_value()),
        np.asarray(fp32[path].get_value()).astype(ml_dtypes.bfloat16))


def test_rope_permutation_turns_interleaved_pairs_into_rotate_half():
  """Wan rotates pairs (2i, 2i+1); vdm (i, i + Dh/2): permuting the rows is the same rotation."""
  rng = np.random.default_rng(0)
  heads, dh = 2, 16
  x = rng.normal(size=(1, 12, heads, dh)).astype(np.float32)
  angles = np.asarray(rope3d_angles(2, 2, 3, dh))[None].reshape(1, 12, dh // 2)
  cos, sin = np.cos(angles), np.sin(angles)
  pairs = x.reshape(1, 12, heads, dh // 2, 2)  # Wan: interleaved
  c, s = cos[:, :, None], sin[:, :, None]
  wan = np.stack([pairs[..., 0] * c - pairs[..., 1] * s, pairs[..., 0] * s + pairs[..., 1] * c],
                 axis=-1).reshape(x.shape)
  perm = rope_permutation(heads * dh, dh).reshape(heads, dh)[0]
  ours = np.asarray(apply_rope(jnp.asarray(x[..., perm]), (cos, sin)))
  np.testing.assert_allclose(ours, wan[..., perm], atol=1e-6)


def test_sharded_safetensors_are_read_through_their_index():
  files = [f for f in os.listdir(os.path.join(ROOTS["diffusers"], "transformer"))
           if f.endswith(".safetensors")]
  assert len(files) > 1  # the fixture is sharded, with an index
  weights = open_component(ROOTS["diffusers"], "diffusers", "transformer")
  assert "blocks.1.attn1.to_q.weight" in weights


def _evil_pth(path):
  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned",))
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))


def test_pth_reader_refuses_anything_but_tensors(tmp_path):
  path = str(tmp_path / "evil.pth")
  _evil_pth(path)
  with pytest.raises(UnsafeCheckpointError, match="refusing to unpickle"):
    read_pth(path)
  not_zip = tmp_path / "legacy.pth"
  not_zip.write_bytes(pickle.dumps({"w": 1}))
  with pytest.raises(ValueError, match="not a PyTorch zip checkpoint"):
    open_weights([str(not_zip)])


def test_pth_tensors_read_lazily_with_their_dtype():
  t5 = read_pth(os.path.join(ROOTS["original"], "models_t5_umt5-xxl-enc-bf16.pth"))
  emb = t5["token_embedding.weight"]
  assert emb.shape == (160, 24) and emb.dtype == np.dtype(ml_dtypes.bfloat16)
  assert emb.numpy().shape == (160, 24)


def test_a_wrong_checkpoint_is_refused_naming_the_parameters():
  recipes = dit_recipes(open_component(ROOTS["diffusers"], "diffusers", "transformer"), depth=1,
                        width=32, head_dim=16)
  with pytest.raises(ValueError, match="missing.*blocks.1"):
    materialize(nnx.eval_shape(tiny_dit), recipes)


def tiny_vae():
  from vdm.vae.model import CausalVAE
  return CausalVAE(base_channels=3, channel_mult=(1, 2, 4, 4), latent_channels=4,
                   temporal_downsample=4, num_res_blocks=2, layout="wan", rngs=nnx.Rngs(0))


@functools.cache
def load_vae(layout: str):
  from vdm.convert.assemble import param_shapes
  from vdm.convert.wan import vae_recipes
  abstract = nnx.eval_shape(tiny_vae)
  return materialize(abstract, vae_recipes(open_component(ROOTS[layout], layout, "vae"),
                                           param_shapes(abstract), num_res_blocks=2))


def test_vae_encode_matches_diffusers_on_a_17_frame_clip(io):
  from vdm.vae.chunked import encode_chunked
  vae = load_vae("diffusers")
  video = jnp.asarray(io["vae_video"]).transpose(0, 2, 3, 4, 1)
  mean, logvar = jitted(vae, "encode")(video)
  assert absolute_error(mean, channels_last(io["vae_mean"]), "VAE encode mean") < 1e-4
  assert absolute_error(logvar, channels_last(io["vae_logvar"]), "VAE encode logvar") < 1e-4
  # Wan's own chunks (1 frame, then 4 at a time) carried by vdm's cache.
  chunked, _ = encode_chunked(vae, video, chunk=1)
  assert absolute_error(chunked, channels_last(io["vae_mean"]), "VAE encode chunked") < 1e-4


def test_vae_decode_matches_diffusers_whole_and_in_chunks(io):
  from vdm.vae.chunked import decode_chunked
  vae = load_vae("original")  # the .pth layout, read by the safe reader
  z = jnp.asarray(io["vae_z"]).transpose(0, 2, 3, 4, 1)
  ref = channels_last(io["vae_decoded"])  # diffusers clamps to [-1, 1]
  whole = np.clip(np.asarray(jitted(vae, "decode")(z)), -1, 1)
  assert whole.shape == ref.shape == (1, 17, 16, 16, 3)
  assert absolute_error(whole, ref, "VAE decode") < 1e-4
  # Wan's own decode: one latent frame at a time, carried by vdm's cache.
  assert absolute_error(np.clip(decode_chunked(vae, z, chunk=1), -1, 1), ref,
                        "VAE decode chunked") < 1e-4


def test_both_vae_layouts_load_the_same_parameters():
  a, b = (dict(nnx.to_flat_state(nnx.state(load_vae(layout), nnx.Param)))
          for layout in ("diffusers", "original"))
  assert a.keys() == b.keys()
  for path in a:
    np.testing.assert_array_equal(a[path].get_value(), b[path].get_value())


@pytest.mark.parametrize("size", ["t2v-1.3b", "t2v-14b"])
def test_full_size_dits_match_the_reference_state_dicts_key_for_key(size):
  """configs/wan.py:SIZE's DiT against the reference's own state dict (shapes dumped from
  diffusers' class on the meta device): every reference tensor is read, every vdm parameter is
  built with its shape, and the counts agree. Only shapes are traced (jax.eval_shape).

  The DiT's blocks are one class built `depth` times with the same arguments, so one block is
  traced and its parameters named for every layer (tracing 40 blocks of the 14B model costs a
  minute of Python); everything else is the full-size model's own."""
  import json

  import jax
  from vdm.config import load_config
  from vdm.convert.assemble import param_shapes
  with open(os.path.join(FIXTURES, f"shapes_{size}.json")) as f:
    reference = json.load(f)
  shapes = {k: tuple(v) for k, v in reference["shapes"].items()}
  config = load_config(f"configs/wan.py:{size}")
  d = config.dit
  one_block = nnx.eval_shape(lambda: DiT.from_config(
      dict_with(d, depth=1), latent_channels=config.vae.latent_channels,
      text_width=config.text.width, rngs=nnx.Rngs(0)))
  ours = {}
  for name, shape in param_shapes(one_block):
    layers = range(d.depth) if name.startswith("blocks.0.") else [None]
    for i in layers:
      ours[name if i is None else f"blocks.{i}." + name[len("blocks.0."):]] = shape
  read = set()

  def get(name):
    read.add(name)
    return jnp.zeros(shapes[name], jnp.bfloat16)  # KeyError: a name the reference lacks

  recipes = dit_recipes(get, depth=d.depth, width=d.width, head_dim=d.width // d.heads)
  assert recipes.keys() == ours.keys()
  built = jax.eval_shape(lambda: {name: recipe() for name, recipe in recipes.items()})
  for name, value in built.items():
    assert value.shape == ours[name], name
  assert read == set(shapes)
  count = sum(int(np.prod(s)) for s in ours.values())
  print(f"{size}: {len(shapes)} reference tensors, {len(ours)} vdm parameters, "
        f"{count:,} parameters (reference {reference['count']:,})")
  assert count == reference["count"]


def dict_with(section, **values):
  """A copy of a config section with some fields replaced."""
  copy = section.copy_and_resolve_references()
  copy.update(values)
  return copy


def flat_params(module: nnx.Module) -> dict:
  return {k: np.asarray(v.get_value())
          for k, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def test_a_wan_directory_converts_loads_and_samples(tmp_path):
  """`vdm convert` writes an orbax model directory equal to what Pipeline.load reads from the
  Wan directory itself (layout detected): same config, tokenizer, latent statistics and
  parameters bit for bit; it samples. (Every mode, the KV-cached one included, is sampled from
  a Wan-layout model in tests/test_wan_train.py; the KV cache on these weights is checked
  against the full block-causal forward below.)"""
  import json

  from vdm.cli import main
  from vdm.generate.pipeline import Pipeline
  out = str(tmp_path / "wan_tiny")
  assert main(["convert", ROOTS["original"], "--out", out]) == 0
  direct, converted = Pipeline.load(ROOTS["original"]), Pipeline.load(out)
  assert json.loads(converted.config.to_json()) == json.loads(direct.config.to_json())
  assert converted.tokenizer.encode(["a red fox runs"], 16)[0].tolist() == (
      direct.tokenizer.encode(["a red fox runs"], 16)[0].tolist())
  np.testing.assert_array_equal(converted.latent_mean, direct.latent_mean)
  np.testing.assert_array_equal(converted.latent_std, direct.latent_std)
  for a, b in ((direct.denoiser, converted.denoiser), (direct.vae, converted.vae)):
    a, b = flat_params(a), flat_params(b)
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=str(k))
  options = dict(seed=0, steps=2, resolution=32, aspect="1:1", seconds=5 / 16)  # 2 latents
  frames = converted("a red fox runs", mode="parallel", **options)
  assert frames.shape == (5, 32, 32, 3) and frames.std() > 0


# ----------------------------------------------------------------------------- block-causal
# generation and few-step generators (Self-Forcing / CausVid) on Wan weights

GENERATOR = os.path.join(FIXTURES, "self_forcing.pt")  # tools/wan_parity.py build_generator


def cached_sampler(dit: DiT, text, mask, *, frames: int, chunk: int):
  """(noise, **generate_autoregressive options) -> latents: `dit` chunk by chunk with the KV
  cache, as `vdm sample --mode autoregressive` runs it."""
  from vdm.generate.kv_cache import empty_cache
  from vdm.generate.streaming import generate_autoregressive
  graphdef, state = nnx.split(dit)

  def chunk_velocity(params, x, t, cache, offset):
    return nnx.merge(graphdef, params).forward_cached(x, t, text, mask, cache, offset)

  def run(noise, **options):
    tokens = (noise.shape[2] // dit.patch) * (noise.shape[3] // dit.patch)
    cache = empty_cache(depth=dit.depth, batch_tokens=noise.shape[0] * tokens, slots=frames,
                        heads=dit.width // dit.head_dim, head_dim=dit.head_dim)
    return generate_autoregressive(chunk_velocity, state, noise, cache, chunk=chunk, **options)
  return run


def test_kv_cached_sampling_equals_the_full_block_causal_forward_on_wan_weights(io):
  """Chunks of 3 latent frames (CausVid's and Self-Forcing's), each sampled with the earlier
  ones read from the KV cache, equal the sampler over the whole noise-level matrix with the
  full forward under the block-causal mask."""
  from vdm.diffusion.samplers import euler
  from vdm.generate.modes import generation_mode
  x, text, mask = dit_inputs(io)
  frames = x.shape[1]
  levels, causal = generation_mode("autoregressive", steps=3, frames=frames, chunk=3, shift=5.0)
  forward = dit_forward()  # built here, not inside the sampler's trace
  full = euler(lambda z, t: forward(z, t, text, mask, jnp.asarray(causal)), x,
               jnp.asarray(levels))
  got = cached_sampler(load_dit("diffusers"), text, mask, frames=frames, chunk=3)(
      x, steps=3, shift=5.0)
  assert relative_error(got, np.asarray(full), "KV-cached vs block-causal sampling") < 1e-5


def self_forcing_reference(velocity, noise, levels, *, chunk: int, rng):
  """Self-Forcing's CausalInferencePipeline.inference, written out with the full forward on the
  frames generated so far (block-causal mask) where it reads its KV cache: chunk c starts from
  noise; each step predicts x0 = x - sigma v and re-noises it to the next level with fresh noise
  (the last step keeps x0); the finished chunk is then context at level 0. The noise of step i
  of chunk c is vdm's draw, normal(fold_in(fold_in(rng, c), i)).

  velocity(z [B, n, ...], levels [B, n], temporal_mask [n, n]) -> v; levels [S + 1] ending at 0.
  """
  noise = np.asarray(noise)
  out = noise[:, :0]
  for c, start in enumerate(range(0, noise.shape[1], chunk)):
    x = noise[:, start:start + chunk]
    key = jax.random.fold_in(rng, c)
    for i, (now, after) in enumerate(zip(levels[:-1], levels[1:])):
      t = np.concatenate([np.zeros((1, start)), np.full((1, chunk), now)], axis=1)
      v = np.asarray(velocity(np.concatenate([out, x], axis=1), t.astype(np.float32),
                              block_causal_mask(start + chunk, chunk)))[:, start:]
      x0 = x - np.float32(now) * v
      z = np.asarray(jax.random.normal(jax.random.fold_in(key, i), x.shape))
      x = np.float32(1 - after) * x0 + np.float32(after) * z
    out = np.concatenate([out, x], axis=1)
  return out


def test_self_forcing_schedules_are_their_warped_timesteps():
  """GENERATORS' levels are the public configs' denoising_step_list / 1000 as their pipelines
  use them: Self-Forcing's [1000, 750, 500, 250] warped with shift 5 (timesteps[1000 - t] of a
  1000-step flow-matching scheduler), CausVid's [1000, 757, 522] unwarped and its 4-step list
  warped with shift 8."""
  from vdm.convert.wan import GENERATORS
  from vdm.generate.modes import time_grid

  def warped(steps, shift):  # Self-Forcing's FlowMatchScheduler(shift, sigma_min=0) lookup
    sigmas = np.linspace(1.0, 0.0, 1001)[:-1]
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return np.append(sigmas[1000 - np.asarray(steps)], 0.0)

  want = {"self-forcing": warped([1000, 750, 500, 250], 5.0),
          "causvid": np.array([1.0, 0.757, 0.522, 0.0]),
          "causvid-4step": warped([1000, 750, 500, 250], 8.0)}
  assert want.keys() == GENERATORS.keys()
  for name, g in GENERATORS.items():
    grid = time_grid(len(g["timesteps"]), shift=g["shift"], spacing=g["timesteps"])
    np.testing.assert_allclose(grid, want[name], atol=1e-6, err_msg=name)
  np.testing.assert_allclose(want["self-forcing"], [1.0, 0.9375, 0.833333, 0.625, 0.0], atol=1e-6)


def test_a_self_forcing_checkpoint_loads_and_samples_with_its_few_step_schedule(io, tmp_path):
  """A generator checkpoint as Self-Forcing saves one ({'generator', 'generator_ema',
  'critic'}, keys 'model.' + Wan's, the EMA's with FSDP wrappers' names) loads into vdm's DiT;
  sampled chunk by chunk with the KV cache and its 4-step schedule (the `consistency` sampler),
  it equals Self-Forcing's own loop run with the full block-causal forward."""
  from vdm.cli import main
  from vdm.convert.wan import GENERATORS, load_wan, open_generator
  config, _, _, denoiser, _ = load_wan(ROOTS["original"], generator=GENERATOR)
  s = config.sample
  assert (s.mode, s.chunk, s.sampler, s.guidance, s.context_noise) == (
      "autoregressive", 3, "consistency", 1.0, 0.0)
  assert (tuple(s.timesteps), s.shift, s.steps) == ((1.0, 0.75, 0.5, 0.25), 5.0, 4)
  # 'generator' is the fixture's DiT itself ...
  base, loaded = flat_params(load_dit("original")), flat_params(denoiser.dit)
  assert base.keys() == loaded.keys()
  for k in base:
    np.testing.assert_array_equal(loaded[k], base[k], err_msg=str(k))
  # ... 'generator_ema' is it plus noise of std 0.01, under the wrappers' names.
  ema = open_generator(GENERATOR, "generator_ema")
  original = open_component(ROOTS["original"], "original", "transformer")
  assert set(ema) == set(original)
  gaps = [np.abs(ema[k] - original[k]).max() for k in original]
  assert 0 < min(gaps) and max(gaps) < 0.1
  # A key the file lacks is refused naming the ones it has; nothing is written.
  assert main(["convert", ROOTS["original"], "--generator", GENERATOR, "--generator-key",
               "model", "--out", str(tmp_path / "bad")]) == 2
  assert not os.path.exists(tmp_path / "bad")

  x, text, mask = dit_inputs(io)
  rng = jax.random.key(7)
  got = cached_sampler(denoiser.dit, text, mask, frames=x.shape[1], chunk=3)(
      x, steps=4, shift=5.0, sampler="consistency", spacing=s.timesteps, rng=rng)
  levels = np.append(GENERATORS["self-forcing"]["timesteps"], 0.0)
  levels = 5 * levels / (1 + 4 * levels)
  forward = dit_forward()
  want = self_forcing_reference(lambda z, t, m: forward(z, t, text, mask, m), x, levels,
                                chunk=3, rng=rng)
  assert relative_error(got, np.asarray(want), "Self-Forcing sampling vs its loop") < 1e-5

"""Wan2.1 in vdm: parity with the reference implementations' own random weights at tiny configs.

The fixtures in tests/fixtures/wan come from tools/wan_parity.py (diffusers' WanTransformer3DModel
and AutoencoderKLWan, transformers' UMT5EncoderModel; `make wan-fixtures`): the weights in both
public layouts and the reference outputs, fp32 on CPU. Nothing here needs torch.
"""
import os
import pickle
import zipfile

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


def relative_error(out, ref) -> float:
  """max |out - ref| / max |ref|."""
  return float(np.abs(np.asarray(out) - ref).max() / np.abs(ref).max())


def tiny_dit():
  dims = dit_dims(ROOTS["diffusers"], "diffusers")
  return DiT(latent_channels=dims["in_channels"], text_width=dims["text_dim"],
             width=dims["heads"] * dims["head_dim"], depth=dims["layers"], heads=dims["heads"],
             patch=2, attention="full", position="rope3d", qk_norm=True, qk_norm_over="width",
             cross_norm=True, modulation="table", time_freq_dim=dims["freq_dim"],
             text_embed="mlp", cross_mask=False, mlp_width=dims["ffn_dim"], rngs=nnx.Rngs(0))


def load_dit(layout: str) -> DiT:
  dims = dit_dims(ROOTS[layout], layout)
  recipes = dit_recipes(open_component(ROOTS[layout], layout, "transformer"),
                        depth=dims["layers"], width=dims["heads"] * dims["head_dim"],
                        head_dim=dims["head_dim"])
  return materialize(nnx.eval_shape(tiny_dit), recipes)


def tiny_umt5():
  return T5Encoder(vocab_size=160, width=24, depth=2, heads=6, mlp=40, position_bias="per_layer",
                   rngs=nnx.Rngs(0))


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


def test_dit_matches_diffusers_at_a_shared_timestep(io):
  x, text, mask = dit_inputs(io)
  out = load_dit("diffusers")(x, jnp.full(x.shape[:2], float(io["dit_t_shared"]) / 1000), text,
                              mask)
  assert relative_error(out, channels_last(io["dit_out_shared"])) < 1e-5


def test_dit_matches_diffusers_with_a_timestep_per_frame(io):
  x, text, mask = dit_inputs(io)
  out = load_dit("diffusers")(x, jnp.asarray(io["dit_t_frames"]) / 1000, text, mask)
  assert relative_error(out, channels_last(io["dit_out_frames"])) < 1e-5


def test_dit_block_causal_matches_diffusers_under_the_same_mask(io):
  """diffusers' own attention with a block-causal mask (chunks of 3 latent frames) injected."""
  x, text, mask = dit_inputs(io)
  out = load_dit("diffusers")(x, jnp.asarray(io["dit_t_frames"]) / 1000, text, mask,
                              jnp.asarray(block_causal_mask(x.shape[1], 3)))
  assert relative_error(out, channels_last(io["dit_out_block_causal"])) < 1e-5
  # ... and its first chunk is diffusers' full attention run on those 3 frames alone.
  first = channels_last(io["dit_out_first_chunk"])
  assert relative_error(out[:, :3], first) < 1e-5


def test_both_dit_layouts_load_the_same_parameters():
  a, b = (nnx.state(load_dit(layout), nnx.Param) for layout in ("diffusers", "original"))
  names = param_names(load_dit("diffusers"))
  flat_a, flat_b = dict(nnx.to_flat_state(a)), dict(nnx.to_flat_state(b))
  assert flat_a.keys() == flat_b.keys() and len(names) == len(flat_a)
  for path in flat_a:
    np.testing.assert_array_equal(flat_a[path].get_value(), flat_b[path].get_value())


def test_umt5_matches_transformers(io):
  out = load_umt5("diffusers")(jnp.asarray(io["umt5_ids"]), jnp.asarray(io["umt5_mask"]))
  assert relative_error(out, io["umt5_hidden"]) < 1e-5


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
  mean, logvar = vae.encode(video)
  assert np.abs(np.asarray(mean) - channels_last(io["vae_mean"])).max() < 1e-4
  assert np.abs(np.asarray(logvar) - channels_last(io["vae_logvar"])).max() < 1e-4
  # Wan's own chunks (1 frame, then 4 at a time) carried by vdm's cache.
  chunked, _ = encode_chunked(vae, video, chunk=1)
  assert np.abs(chunked - channels_last(io["vae_mean"])).max() < 1e-4


def test_vae_decode_matches_diffusers_whole_and_in_chunks(io):
  from vdm.vae.chunked import decode_chunked
  vae = load_vae("original")  # the .pth layout, read by the safe reader
  z = jnp.asarray(io["vae_z"]).transpose(0, 2, 3, 4, 1)
  ref = channels_last(io["vae_decoded"])  # diffusers clamps to [-1, 1]
  whole = np.clip(np.asarray(vae.decode(z)), -1, 1)
  assert whole.shape == ref.shape == (1, 17, 16, 16, 3)
  assert np.abs(whole - ref).max() < 1e-4
  for chunk in (1, 2):  # 1: Wan's per-latent-frame decode
    assert np.abs(np.clip(decode_chunked(vae, z, chunk=chunk), -1, 1) - ref).max() < 1e-4


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
  built with its shape, and the counts agree. Only shapes are traced (jax.eval_shape)."""
  import json

  import jax
  from vdm.config import load_config
  from vdm.convert.assemble import param_shapes
  from vdm.models import build_denoiser
  with open(os.path.join(FIXTURES, f"shapes_{size}.json")) as f:
    reference = json.load(f)
  shapes = {k: tuple(v) for k, v in reference["shapes"].items()}
  config = load_config(f"configs/wan.py:{size}")
  dit = nnx.eval_shape(lambda: build_denoiser(config, config.text.vocab_rows)).dit
  ours = dict(param_shapes(dit))
  read = set()

  def get(name):
    read.add(name)
    return jnp.zeros(shapes[name], jnp.bfloat16)  # KeyError: a name the reference lacks

  d = config.dit
  recipes = dit_recipes(get, depth=d.depth, width=d.width, head_dim=d.width // d.heads)
  assert recipes.keys() == ours.keys()
  for name, recipe in recipes.items():
    assert jax.eval_shape(recipe).shape == ours[name], name
  assert read == set(shapes)
  count = sum(int(np.prod(s)) for s in ours.values())
  print(f"{size}: {len(shapes)} reference tensors, {len(ours)} vdm parameters, "
        f"{count:,} parameters (reference {reference['count']:,})")
  assert count == reference["count"]


def test_a_wan_directory_converts_loads_and_samples_in_parallel_and_autoregressive_modes(
    tmp_path):
  """`vdm convert` writes an orbax model directory equal to what Pipeline.load reads from the
  Wan directory itself (layout detected); both sample, chunk by chunk with the KV cache too."""
  from vdm.cli import main
  from vdm.generate.pipeline import Pipeline
  out = str(tmp_path / "wan_tiny")
  assert main(["convert", ROOTS["original"], "--out", out]) == 0
  direct, converted = Pipeline.load(ROOTS["original"]), Pipeline.load(out)
  import json
  assert json.loads(converted.config.to_json()) == json.loads(direct.config.to_json())
  options = dict(seed=0, steps=2, resolution=32, aspect="1:1", seconds=9 / 16)
  frames = direct("a red fox runs", mode="parallel", **options)
  assert frames.shape == (9, 32, 32, 3)
  np.testing.assert_array_equal(converted("a red fox runs", mode="parallel", **options), frames)
  ar = direct("a red fox runs", mode="autoregressive", chunk=1, **options)
  assert ar.shape == (9, 32, 32, 3) and ar.std() > 0

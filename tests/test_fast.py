"""Few-step students (vdm/train/distill.py, configs/fast.py) at tiny size, from one tiny teacher:
the ODE-pair and Self-Forcing recipes through the one loop, exported and sampled at their own
levels; every recipe's student exported as the task exports it and sampled; the recipes' losses
checked against closed forms (zero at the teacher, where they must vanish); the training rollouts
equal the samplers they stand for; a guidance-distilled model runs one DiT row a step.
"""
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm import cli
from vdm.config import ConfigError, load_config
from vdm.diffusion.samplers import sample
from vdm.generate import streaming
from vdm.generate.kv_cache import empty_cache
from vdm.generate.modes import block_causal_mask, chunk_ids, explicit_levels, time_grid
from vdm.models import build_denoiser, build_vae, load_model_dir, save_model_dir
from vdm.text.tokenizer import Tokenizer, train_tokenizer
from vdm.train import distill
from vdm.train.batches import training_captions
from vdm.train.run import run_training

PROMPT = "a red circle moving right on a blue background"


def randomize(module, seed=1, scale=0.2):
  """Replaces every parameter by a random one (the zero-initialised adaLN and output layers
  would otherwise make every path but one vanish)."""
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  leaves = [scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
  return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves), rest)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
  """A tiny Diffusion-Forcing-configured model directory with random weights (no training):
  what the recipes need of a teacher is its shape and its function, not its quality."""
  os.environ["VDM_NO_PROGRESS"] = "1"
  # fp32 matmuls: the identities below (a zero DMD gradient, rollouts equal to samplers) are
  # exact up to fp32 rounding, not bf16's.
  config = load_config("configs/spine.py:tiny", [
      "diffusion.per_frame_levels_prob=0.5", "diffusion.causal_prob=0.5",
      "diffusion.max_frame_offset=8", "dit.matmul_dtype='float32'"])
  tokenizer = Tokenizer(train_tokenizer(training_captions(config, num=500),
                                        vocab_size=config.text.vocab_size,
                                        model_type=config.text.tokenizer))
  directory = str(tmp_path_factory.mktemp("tiny_teacher") / "model")
  c = config.vae.latent_channels
  save_model_dir(directory, config=config, tokenizer=tokenizer, vae=build_vae(config, 0),
                 denoiser=randomize(build_denoiser(config, tokenizer.vocab_size, 1)),
                 latent_stats=dict(mean=np.zeros(c), std=np.ones(c)))
  return directory


def export_untrained(teacher, variant: str, directory: str) -> str:
  """The model directory the distillation task exports for `variant`, before any training: the
  student's config (`distill.student_config`) and the teacher's weights (`distill.start_from`;
  new inputs at zero effect). What sampling needs of a student, without compiling a train step."""
  t_config, tokenizer, vae, t_model, stats = load_model_dir(teacher)
  config = load_config(f"configs/fast.py:{variant},tiny", [f"teacher={teacher}"])
  s_config = distill.student_config(t_config, config)
  student = build_denoiser(s_config, tokenizer.vocab_size, 3)
  distill.start_from(t_model, student)
  save_model_dir(directory, config=s_config, tokenizer=tokenizer, vae=vae, denoiser=student,
                 latent_stats=stats)
  return directory


# The recipes trained here through `vdm train`'s run_training (each compiles its own train step,
# the cost of this file); the others' losses are checked by the unit tests below.
TRAINED = ("ode_init", "self_forcing")


@pytest.fixture(scope="module")
def students(teacher, tmp_path_factory):
  """recipe -> model directory: ode_init and self_forcing (from the ode_init student, rolled out
  over 2 training lengths) trained 2 steps; guidance and shortcut exported untrained."""
  root = tmp_path_factory.mktemp("students")
  out = {}
  for variant, extra in (("ode_init", []),
                         ("self_forcing", ["init_from=" + str(root / "ode_init" / "model"),
                                           "self_forcing.rollout=2"])):
    config = load_config(f"configs/fast.py:{variant},tiny", [f"teacher={teacher}"] + extra)
    out[variant] = run_training(config, str(root / variant))
  for variant in ("guidance", "shortcut"):
    out[variant] = export_untrained(teacher, variant, str(root / variant / "model"))
  return out


@pytest.mark.parametrize("recipe", TRAINED)
def test_each_recipe_trains_through_the_loop_and_exports_a_model(students, recipe):
  model_dir = students[recipe]
  workdir = os.path.dirname(model_dir)
  lines = [json.loads(l) for l in open(os.path.join(workdir, recipe, "metrics.jsonl"))]
  assert [l["step"] for l in lines] == [1, 2]
  assert all(np.isfinite(l["loss"]) for l in lines)
  if recipe == "self_forcing":  # the fake score trains beside the generator
    assert all(np.isfinite(l["fake_loss"]) for l in lines)
  assert json.load(open(os.path.join(model_dir, "distill.json")))["recipe"] == recipe
  config = load_model_dir(model_dir)[0]
  assert not config.dit.guidance_input and not config.dit.step_input
  assert config.sample.sampler == "consistency"
  assert config.sample.mode == ("autoregressive" if recipe == "self_forcing" else "parallel")


@pytest.mark.parametrize("recipe", ["guidance", "shortcut", "dmd", "finetune"])
def test_each_recipe_configures_its_student(teacher, recipe):
  """The sampling each exported student gets (`distill.student_config`): its extra inputs,
  sampler, levels and the guidance baked into its weights."""
  t_config = load_model_dir(teacher)[0]
  config = load_config(f"configs/fast.py:{recipe},tiny", [f"teacher={teacher}"])
  s = distill.student_config(t_config, config)
  assert s.dit.guidance_input == (recipe == "guidance")
  assert s.dit.step_input == (recipe == "shortcut")
  assert s.sample.sampler == {"guidance": "euler", "shortcut": "shortcut", "dmd": "consistency",
                              "finetune": t_config.sample.sampler}[recipe]
  assert bool(s.sample.timesteps) == (recipe == "dmd")
  assert s.sample.distilled_guidance == (config.guidance if recipe in ("shortcut", "dmd")
                                         else 0.0)


def test_students_sample_with_their_own_levels(students, teacher):
  import vdm
  pipe = vdm.Pipeline.load(students["ode_init"])
  s = pipe.config.sample  # its levels, as a few-step generator lists them: warped by the shift
  levels = tuple(s.timesteps)
  assert len(levels) == 4 and levels[0] == 1.0 and s.shift == 3.0
  np.testing.assert_allclose(time_grid(4, shift=s.shift, spacing=levels)[:-1],
                             distill.student_schedule(load_config(
                                 "configs/fast.py:ode_init,tiny", [f"teacher={teacher}"])))
  for steps in (2, 4):  # all its levels, or evenly spaced ones of them
    assert pipe(PROMPT, steps=steps).shape == (5, 16, 16, 3)
  np.testing.assert_allclose(explicit_levels(levels, 2), [levels[0], levels[2]])
  with pytest.raises(ValueError, match=r"--steps 5 does not fit .*timesteps.*allowed: 1\.\.4"):
    pipe(PROMPT, steps=5)
  same = [pipe(PROMPT, seed=3, steps=2) for _ in range(2)]
  np.testing.assert_array_equal(*same)
  ar = vdm.Pipeline.load(students["self_forcing"])
  assert ar(PROMPT, seconds=2.0).shape[0] == 17  # autoregressive, past the training length
  shortcut = vdm.Pipeline.load(students["shortcut"])
  for steps in (1, 8):  # any step count, more than its default too
    assert shortcut(PROMPT, steps=steps).shape == (5, 16, 16, 3)


def test_sample_cli_on_a_student_and_its_errors(students, tmp_path, capsys):
  out = str(tmp_path / "clip.mp4")
  assert cli.main(["sample", "--checkpoint", students["ode_init"], "--prompt", PROMPT, "--steps",
                   "2", "--out", out]) == 0
  assert json.load(open(out[:-4] + ".json"))["request"]["sampler"] == "consistency"
  assert cli.main(["sample", "--checkpoint", students["ode_init"], "--prompt", PROMPT,
                   "--steps", "8", "--out", str(tmp_path / "bad.mp4")]) == 2
  assert "allowed: 1..4" in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "bad.mp4")


def test_a_student_starts_as_its_teacher(teacher):
  """New inputs (guidance, step) start at zero effect: the copied student is the teacher."""
  t_config, tokenizer, _, t_model, _ = load_model_dir(teacher)
  config = load_config("configs/fast.py:guidance,tiny", [f"teacher={teacher}"])
  s_config = distill.student_config(t_config, config)
  s_config.dit.step_input = True
  student = build_denoiser(s_config, tokenizer.vocab_size, 7)
  new = distill.start_from(t_model, student)
  assert sorted({n.split(".")[1] for n in new}) == ["guidance_embed", "step_embed"]
  ids, mask = tokenizer.encode([PROMPT, "a blue square"], t_config.text.max_length)
  ids, mask = jnp.asarray(ids), jnp.asarray(mask)
  z = jax.random.normal(jax.random.key(0), (2, 3, 4, 4, 8))
  t = jnp.array([[0.3, 0.5, 0.9], [1.0, 0.2, 0.0]])
  conditions = ((1.0, 0.0), (4.0, 0.5), (4.0, 0.0), (1.0, 0.5))  # (guidance, step)

  @nnx.jit  # one program for all the forwards below
  def velocities(teacher, student):
    return teacher(z, t, ids, mask), [
        student(z, t, ids, mask, guidance=jnp.full((2,), w), step=jnp.full((2, 3), d))
        for w, d in conditions]

  want, got = velocities(t_model, student)
  for v in got:
    np.testing.assert_allclose(v, want, atol=1e-6)
  # Once trained (here: random output layers), each input reaches the velocity.
  for name in ("guidance_embed", "step_embed"):
    fc2 = getattr(student.dit, name).fc2
    fc2.kernel.set_value(0.5 * jax.random.normal(jax.random.key(9), fc2.kernel.get_value().shape))
  outs = velocities(t_model, student)[1]
  outs = [outs[i] for i in (0, 2, 3)]  # (1, 0), (4, 0), (1, 0.5)
  assert float(jnp.abs(outs[0] - outs[1]).max()) > 1e-3  # the guidance scale
  assert float(jnp.abs(outs[0] - outs[2]).max()) > 1e-3  # the step size
  # and the copy is a copy: the student's buffers are not the teacher's
  leaf = lambda m: nnx.state(m, nnx.Param)["dit"]["embed"]["kernel"].get_value()  # noqa
  assert leaf(student) is not leaf(t_model)


@pytest.fixture(scope="module")
def random_student(teacher):
  """(config, the tiny teacher's denoiser, ids and mask of two prompts) for the unit tests."""
  config, tokenizer, _, model, _ = load_model_dir(teacher)
  ids, mask = tokenizer.encode([PROMPT, "a green square moving up on a red background"],
                               config.text.max_length)
  return config, model, jnp.asarray(ids), jnp.asarray(mask)


def test_few_step_rollout_at_its_last_exit_is_the_consistency_sampler(random_student):
  """Training's generator rollout (DMD) exits at the last step: the inference sampler, draw for
  draw; the gradient flows through the exit step only."""
  config, model, ids, mask = random_student
  schedule = jnp.asarray((1.0, 0.9, 0.75, 0.5), jnp.float32)
  x1 = jax.random.normal(jax.random.key(1), (2, 3, 4, 4, 8))
  rng = jax.random.key(2)
  rolled = nnx.jit(lambda m: distill.few_step_rollout(m, x1, schedule, 3, rng, (ids, mask)))(
      model)
  levels = jnp.broadcast_to(jnp.append(schedule, 0.0)[:, None], (5, 3))
  sampled = nnx.jit(lambda m: sample("consistency", lambda x, t: m(x, t, ids, mask), x1, levels,
                                     rng=rng))(model)
  np.testing.assert_allclose(rolled, sampled, atol=2e-5)


def test_self_forcing_rollout_is_the_streaming_sampler(random_student):
  """The autoregressive student's training rollout, every chunk exiting at its last step, is
  chunk-by-chunk KV-cached generation with the consistency sampler (what `vdm sample --mode
  autoregressive` runs on the exported student), noise draw for noise draw."""
  config, model, ids, mask = random_student
  levels = (1.0, 0.75)
  x1 = jax.random.normal(jax.random.key(3), (2, 5, 4, 4, 8))
  rng = jax.random.key(4)
  window = 3
  rolled = nnx.jit(lambda m: distill.self_forcing_rollout(
      m, x1, jnp.asarray(levels), rng, ids=ids, mask=mask, chunk=1, context_level=0.0,
      window=window, exit_steps=jnp.full((5,), 1)))(model)
  text = model.text(ids, mask)
  dit = model.dit

  def chunk_velocity(params, x, t, cache, offset):
    return dit.forward_cached(x, t, text, mask, cache, offset)

  cache = empty_cache(depth=dit.depth, batch_tokens=2 * 4, slots=window, heads=2,
                      head_dim=dit.head_dim)
  streamed = streaming.generate_autoregressive(chunk_velocity, None, x1, cache, chunk=1,
                                               steps=2, sampler="consistency", rng=rng,
                                               spacing=levels)
  np.testing.assert_allclose(rolled, streamed, atol=2e-5)


def test_causal_ode_loss_scores_noisy_chunks_only(random_student):
  config, model, ids, mask = random_student
  traj = jax.random.normal(jax.random.key(5), (2, 5, 5, 4, 4, 8))  # [B, K + 1, T, ...]
  batch = dict(trajectory=traj, ids=ids, mask=mask)
  levels = (1.0, 0.9, 0.75, 0.5)
  loss, metrics = nnx.jit(lambda m, b: distill.ode_loss(m, b, jax.random.key(6), levels=levels,
                                                        causal_chunk=1))(model, batch)
  assert np.isfinite(loss) and 0 < metrics["mean_level"] < 1
  # A student that knows the ODE's clean end: v = (x - end) / t at noisy frames, anything at
  # clean ones (x - 0 v = x is the end there). Its loss is 0 only if every frame, whichever
  # point of the trajectory it was drawn from, is scored against its own clean end.
  end = traj[:, -1]

  def oracle(x, t, ids, mask, temporal_mask, offset):
    assert temporal_mask.shape == (5, 5)
    exact = (x - end) / jnp.maximum(t, 1e-6)[..., None, None, None]
    return jnp.where((t > 0)[..., None, None, None], exact, 1e3)

  oracle_loss = jax.jit(lambda b: distill.ode_loss(oracle, b, jax.random.key(6), levels=levels,
                                                   causal_chunk=1)[0])
  np.testing.assert_allclose(oracle_loss(batch), 0.0, atol=1e-8)
  shifted = dict(batch, trajectory=traj.at[:, -1].add(0.1))  # another end: the loss sees it
  assert oracle_loss(shifted) > 1e-4
  assert block_causal_mask(5, 1).sum() == 15 and chunk_ids(5, 1)[-1] == 4


@pytest.mark.parametrize("recipe", ["guidance", "shortcut"])
def test_data_recipes_losses_vanish_at_the_teacher_at_scale_1(teacher, recipe):
  """A student started from its teacher (new input at zero effect) gives the teacher's
  conditional velocity: guidance distillation and shortcut's base loss against the guided
  teacher are 0 at scale 1 (CFG at 1 is the conditional velocity) and not at scale 4."""
  t_config, tokenizer, _, t_model, _ = load_model_dir(teacher)
  config = load_config(f"configs/fast.py:{recipe},tiny", [f"teacher={teacher}"])
  student = build_denoiser(distill.student_config(t_config, config), tokenizer.vocab_size, 5)
  distill.start_from(t_model, student)
  ids, mask = tokenizer.encode([PROMPT, "a green square moving up on a red background"],
                               t_config.text.max_length)
  empty_ids, empty_mask = tokenizer.encode(["", ""], t_config.text.max_length)
  teacher_def, teacher_state = nnx.split(t_model)
  batch = dict(latents=jax.random.normal(jax.random.key(8), (2, 3, 4, 4, 8)), ids=ids,
               mask=mask, empty_ids=empty_ids, empty_mask=empty_mask, teacher=teacher_state)
  common = dict(teacher_def=teacher_def, diffusion=t_config.diffusion, temporal_patch=1)

  def loss(scale):
    if recipe == "guidance":
      return functools.partial(distill.guidance_loss, scales=(scale, scale), **common)
    return functools.partial(distill.shortcut_loss, scale=scale, self_fraction=0.0, max_steps=4,
                             **common)

  rng = jax.random.key(9)
  at_1, at_4 = nnx.jit(lambda m, b: (loss(1.0)(m, b, rng)[0], loss(4.0)(m, b, rng)[0]))(
      student, batch)  # one program
  assert float(at_1) < 1e-9
  assert float(at_4) > 1e-6


def test_dmd_gradient_vanishes_when_the_fake_score_is_the_teacher(random_student, teacher):
  """Real and fake scores equal (the teacher unguided, scale 1): the DMD direction is zero, and
  so is the generator's gradient."""
  config, model, ids, mask = random_student
  teacher_def, teacher_state = nnx.split(model)
  # The "negative prompt" is the prompt: guidance of any scale is the conditional velocity.
  batch = dict(ids=ids, mask=mask, empty_ids=ids, empty_mask=mask, teacher=teacher_state)

  def loss(student):
    return distill.dmd_generator_loss(student, batch, jax.random.key(7), model, True,
                                      teacher_def=teacher_def, scale=1.0,
                                      schedule=(1.0, 0.75), levels=(0.02, 0.98),
                                      shape=(5, 4, 4, 8))[0]

  grads = nnx.jit(nnx.grad(loss))(model)
  assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) < 1e-6


def test_guided_velocity_rows_and_values(teacher, monkeypatch):
  """The sampler's velocity (`guided_velocity`, both the matrix and the KV-cached paths): CFG
  runs the DiT on 2 rows per clip and equals guide() of two separate forwards; guidance 1 runs 1
  row, the conditional velocity; a guidance-distilled DiT runs 1 row at any scale, and started
  from its teacher it is the teacher's conditional velocity (its new input starts at zero
  effect). One traced program: each DiT forward is counted as it is traced."""
  from vdm.diffusion.guidance import guide
  from vdm.dit import model as dit_model
  from vdm.generate.pipeline import guided_velocity
  t_config, tokenizer, _, t_model, _ = load_model_dir(teacher)
  config = load_config("configs/fast.py:guidance,tiny", [f"teacher={teacher}"])
  student = build_denoiser(distill.student_config(t_config, config), tokenizer.vocab_size, 7)
  distill.start_from(t_model, student)
  ids, mask = tokenizer.encode([PROMPT, ""], t_config.text.max_length)
  ids, mask = jnp.asarray(ids), jnp.asarray(mask)
  z = jax.random.normal(jax.random.key(0), (1, 3, 4, 4, 8))
  t = jnp.array([[0.9, 0.6, 0.3]])
  rows, original = [], dit_model.DiT._forward

  def counting(self, z, *args, **kwargs):
    rows.append(z.shape[0])
    return original(self, z, *args, **kwargs)

  monkeypatch.setattr(dit_model.DiT, "_forward", counting)

  def velocities(teacher, student):  # traced once: the rows are recorded in call order
    text, s_text = teacher.text(ids, mask), student.text(ids, mask)  # [2, L, D]: prompt, ""
    cond = teacher.dit(z, t, text[:1], mask[:1])
    uncond = teacher.dit(z, t, text[1:], mask[1:])
    return dict(
        cond=cond, uncond=uncond, cfg=guided_velocity(teacher.dit, z, t, text, mask, 3.0),
        plain=guided_velocity(teacher.dit, z, t, text, mask, 1.0, guided=False),
        **{f"student_{w}": guided_velocity(student.dit, z, t, s_text, mask, w)
           for w in (1.0, 4.0)})

  v = nnx.jit(velocities)(t_model, student)
  assert rows == [1, 1, 2, 1, 1, 1]  # cond, uncond; CFG; guidance 1; the student at 1 and 4
  np.testing.assert_allclose(v["cfg"], guide(v["cond"], v["uncond"], scale=3.0), atol=1e-5)
  for name in ("plain", "student_1.0", "student_4.0"):
    np.testing.assert_allclose(v[name], v["cond"], atol=1e-5)


def test_bad_distillation_configs_are_named(teacher, tmp_path):
  with pytest.raises(ConfigError, match="recipe"):
    load_config("configs/fast.py:guidance,tiny", [f"teacher={teacher}", "recipe='magic'"])
  with pytest.raises(ConfigError, match="teacher"):
    load_config("configs/fast.py:guidance,tiny", ["teacher='no/such/dir'"])
  with pytest.raises(ConfigError, match="ode.teacher_steps"):
    load_config("configs/fast.py:ode_init,tiny", [f"teacher={teacher}", "ode.teacher_steps=6"])
  with pytest.raises(ConfigError, match="guidance_min"):
    load_config("configs/fast.py:guidance,tiny", [f"teacher={teacher}", "guidance_min=7.0"])
  with pytest.raises(ConfigError, match="train.accumulate"):
    load_config("configs/fast.py:dmd,tiny", [f"teacher={teacher}", "train.accumulate=2"])
  with pytest.raises(ConfigError, match="configs/fast.py"):
    load_config("configs/fast.py:nope")
  config = load_config("configs/fast.py:dmd,tiny", [f"teacher={teacher}",
                                                     "init_from='no/student'"])
  with pytest.raises(ValueError, match="init_from"):
    run_training(config, str(tmp_path / "w"))
  assert cli.main(["train", "--config", "configs/fast.py:dmd,tiny", "--workdir",
                   str(tmp_path / "w2"), "--set", f"teacher={teacher}", "--set",
                   "self_forcing.chunk=0"]) == 2


def test_fast_benchmark_counts_rows_per_step(teacher, students, tmp_path, monkeypatch):
  """The benchmark's row counts: 2 per step for the teacher's CFG, 1 for the guidance-distilled
  student (at the teacher's scale) and for a student with guidance baked in (at --guidance 1)."""
  from benchmarks import fast
  monkeypatch.setenv("VDM_BENCH_DIR", str(tmp_path))
  fast.run(["--teacher", teacher, "--students", f"{students['guidance']},{students['ode_init']}",
            "--repeats", "1", "--modes", "parallel", "--teacher-steps", "4"])
  rows = json.load(open(tmp_path / "fast.json"))["rows"]
  by_model = {}
  for row in rows:
    by_model.setdefault(row["model"], set()).add(row["dit_rows_per_step"])
  assert by_model == {"teacher": {2}, "guidance": {1}, "ode_init": {1}}
  assert all(row["first_frame_s_min"] <= row["clip_s_min"] for row in rows)

"""The few-step distillation config (`task = 'distill'`, configs/fast.py): every field once, and
the rules between them.

A distillation run starts from a trained text-to-video model directory (the teacher) and trains
a student of the same shape through the one loop with one recipe's loss (vdm/train/distill.py);
the student is exported as a model directory that `vdm sample` runs, its few-step schedule and
sampler stored in its config.
"""
from __future__ import annotations

import os

from vdm.config.fields import BOOL, Field, integer, number, one_of, require, text
from vdm.config.t2v import SEED, stage

RECIPES = ("guidance", "shortcut", "ode_init", "dmd", "self_forcing", "finetune")
POSITIVE = integer(1)

SCHEMA = dict(
    name=Field("fast", "the run's name", text()),
    task=Field("distill", "what `vdm train` trains: 't2v' text to video, 'sr' the learned "
               "upscaler, 'distill' a few-step student of a t2v model",
               one_of(("t2v", "sr", "distill"))),
    seed=Field(0, "seed of the student's new weights and the training randomness", SEED),
    recipe=Field("dmd", "guidance: the guidance scale as an input, one forward instead of two | "
                 "shortcut: the step size as an input, self-consistent few-step jumps | "
                 "ode_init: regress the teacher's ODE ends from its trajectory (pairs the teacher "
                 "generates) | dmd: distribution matching against the teacher and a learned fake "
                 "score | self_forcing: dmd on the autoregressive student's own KV-cached rollouts | "
                 "finetune: the teacher's own flow matching on data (the baseline at equal "
                 "compute)",
                 one_of(RECIPES)),
    teacher=Field("checkpoints/spine_forcing", "the teacher: a t2v model directory",
                  text("a model directory path")),
    init_from=Field("", "a model directory the student starts from ('' the teacher); e.g. an "
                    "ode_init student for dmd or self_forcing", text("a path string")),
    data_dir=Field("", "where the teacher's dataset is built or read ('' for <workdir>/data; "
                   "guidance, shortcut and finetune train on its clips)", text("a directory path string")),
    guidance=Field(4.0, "the teacher's classifier-free guidance scale the student learns (the "
                   "guidance recipe: the top of the scales it draws)", number(1.0, 100.0)),
    guidance_min=Field(1.0, "guidance recipe: scales are drawn uniformly in [guidance_min, "
                       "guidance]", number(0.0, 100.0)),
    schedule=dict(
        steps=Field(4, "the student's steps: its levels are the first `steps` of a "
                    "time_grid(steps, shift) (ode_init, dmd, self_forcing; shortcut's default "
                    "step count)", integer(1, 64)),
        shift=Field(3.0, "the shift of the student's time grid", number(0.01, 100.0)),
    ),
    shortcut=dict(
        max_steps=Field(64, "the smallest self-consistency step is 1 / max_steps of a level "
                        "(a power of 2)", integer(2, 4096)),
        self_fraction=Field(0.25, "fraction of each batch trained on self-consistency (the rest "
                            "regresses the teacher at step 0)", number(0.0, 1.0)),
    ),
    ode=dict(
        pairs=Field(1024, "trajectories the teacher generates (ode_init)", POSITIVE),
        teacher_steps=Field(24, "teacher Euler steps per trajectory (a multiple of "
                            "schedule.steps: the student's levels are on the teacher's grid)",
                            POSITIVE),
        batch_size=Field(32, "trajectories generated per teacher call", POSITIVE),
        causal=Field(False, "regress per chunk (self_forcing.chunk) under a block-causal mask: "
                     "the init of an autoregressive (self_forcing) student", BOOL),
    ),
    dmd=dict(
        fake_learning_rate=Field(4e-4, "AdamW learning rate of the fake score",
                                 number(1e-8, 1.0)),
        min_level=Field(0.02, "levels the scores are compared at are drawn uniformly in "
                        "[min_level, max_level]", number(0.0, 1.0)),
        max_level=Field(0.98, "see min_level", number(0.0, 1.0)),
    ),
    self_forcing=dict(
        chunk=Field(1, "latent frames per autoregressive chunk", POSITIVE),
        rollout=Field(1, "rolled-out length in training lengths: 1 = the training length; k > 1 "
                      "rolls k lengths with the KV cache's window and scores a random "
                      "training-length window of it (long-horizon training)", integer(1, 16)),
        context_noise=Field(0.0, "the level finished chunks are cached at (Diffusion Forcing "
                            "context noise)", number(0.0, 1.0, open_high=True)),
    ),
    finetune=dict(
        teacher_forcing=Field(False, "finetune with teacher forcing (clean earlier chunks, one "
                              "noisy chunk scored, block-causal) instead of the teacher's own "
                              "level scheme", BOOL),
    ),
    train=stage(steps=600, batch_size=16, learning_rate=1e-4, warmup_steps=20, ema_decay=0.99,
                log_every=20, checkpoint_every=100),
)


def is_model_dir(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "config.json"))


def validate(config) -> None:
  """The rules between fields of a distillation config."""
  # init_from is checked when the run starts: it may be a student trained by an earlier step
  # of the same recipe chain (configs/fast.py's dmd starts from the ode_init student).
  require(is_model_dir(config.teacher), "teacher", config.teacher,
          "a model directory written by `vdm train` (with config.json)")
  require(config.guidance_min <= config.guidance, "guidance_min", config.guidance_min,
          f"at most guidance={config.guidance}")
  steps = config.schedule.steps
  require(config.ode.teacher_steps % steps == 0, "ode.teacher_steps", config.ode.teacher_steps,
          f"a multiple of schedule.steps={steps}")
  # The teacher rides in every batch whole (not split into micro-batches) and DMD's critic
  # reads the generator's whole batch.
  require(config.train.accumulate == 1, "train.accumulate", config.train.accumulate,
          "1 (distillation steps take whole batches)")
  max_steps = config.shortcut.max_steps
  require(max_steps & (max_steps - 1) == 0, "shortcut.max_steps", max_steps, "a power of 2")
  require(config.dmd.min_level < config.dmd.max_level, "dmd.min_level", config.dmd.min_level,
          f"below dmd.max_level={config.dmd.max_level}")

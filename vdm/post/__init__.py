"""vdm.post: finishing stages, array in, array out ([T, H, W, 3] uint8 or float in [0, 1]).

  from vdm.post import apply_pipeline
  out = apply_pipeline(frames, "upscale(2)|deflicker(0.5)|grade(lut=film.cube)|sharpen(0.3)")

Each stage is a function in the module of the same name (`from vdm.post.grade import grade`);
they are not re-exported here, where they would shadow their modules.
"""
from vdm.post.lut import Lut, read_cube, write_cube
from vdm.post.chain import PipelineError, Stage, apply_pipeline, format_pipeline, parse_pipeline

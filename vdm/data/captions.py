"""Caption grammar for `vdm.data.scenes`: the same clip in a short and a long phrasing.

Layered the way people write video prompts: subject, action with speed, environment, camera.

  short := clause ["while" clause_present ("and" clause_present)*] environment ["," camera]
  long  := Clause_present ["while" clause_present ...] "." [relation "."] Environment "." Camera "."
  clause          := "a" COLOR SHAPE ACTION_participle    e.g. "a red star moving quickly left"
  clause_present  := "a" COLOR SHAPE ACTION_present       e.g. "a green ring bounces off the walls"
  SHAPE           := circle | square | triangle | star | ring | "digit" 0-9
  ACTION          := standing still | moving SPEED DIRECTION | bouncing SPEED off the walls
                   | moving SPEED in a circle | growing SPEED | shrinking SPEED | spinning SPEED
  SPEED           := slowly | quickly;  DIRECTION := left | right | up | down | up and left | ...
  environment     := "on a COLOR background" | "on a COLOR and COLOR gradient" | "over a photo of X"
  camera          := "the camera pans left|right|up|down" | "the camera zooms in|out"
                     (long form: "The camera is still." for a static camera)
  relation        := "The A starts to the left of|right of|above|below the B"  (two or more objects)
"""
from __future__ import annotations

import re

import numpy as np

from vdm.data import assets
from vdm.data import scenes

SPEED_WORDS = ("slowly", "quickly")
_DIRECTION_WORDS = {"up-left": "up and left", "up-right": "up and right",
                    "down-left": "down and left", "down-right": "down and right"}


def article(word: str) -> str:
  """'a' or 'an' for the word that follows."""
  return "an" if word[:1] in "aeio" else "a"


def _a(text: str) -> str:
  return f"{article(text)} {text}"


def subject(obj: scenes.ObjectSpec) -> str:
  """'red square', or 'red digit 7' (no article)."""
  color = scenes.COLOR_NAMES[obj.color]
  if scenes.SHAPES[obj.shape] == "digit":
    return f"{color} digit {int(assets.mnist_digits()[1][obj.digit])}"
  return f"{color} {scenes.SHAPES[obj.shape]}"


def action(obj: scenes.ObjectSpec, present: bool = False) -> str:
  """'moving quickly left' (participle) or 'moves quickly left' (present tense)."""
  name = scenes.MOTIONS[obj.motion]
  adv = SPEED_WORDS[obj.speed]
  if name == "still":
    return "stands still" if present else "standing still"
  if name in scenes.MOTION_VECTORS:
    return f"{'moves' if present else 'moving'} {adv} {_DIRECTION_WORDS.get(name, name)}"
  verb = {"bounce": ("bouncing", "bounces"), "circle": ("moving", "moves"),
          "grow": ("growing", "grows"), "shrink": ("shrinking", "shrinks"),
          "rotate": ("spinning", "spins")}[name][present]
  tail = {"bounce": " off the walls", "circle": " in a circle"}.get(name, "")
  return f"{verb} {adv}{tail}"


def environment(scene: scenes.Scene) -> str:
  """'on a blue background', 'on a blue and yellow gradient' or 'over a photo of a cat'."""
  kind = scenes.BACKGROUNDS[scene.background]
  a, b = (scenes.COLOR_NAMES[i] for i in scene.bg_colors)
  if kind == "solid":
    return f"on {_a(a)} background"
  if kind == "gradient":
    return f"on {_a(a)} and {b} gradient"
  return f"over a photo of {assets.TEXTURES[scene.texture][1]}"


def camera(scene: scenes.Scene) -> str:
  """'the camera pans left', 'the camera zooms in', or '' for a static camera."""
  name = scenes.CAMERAS[scene.camera]
  if name == "static":
    return ""
  kind, where = name.split("-")
  return f"the camera {kind}s {where}"


# The camera clause of a caption (`camera` above): the short form's ', the camera pans left' /
# ', the camera zooms in', the long form's sentence ('The camera pans left.', 'The camera is
# still.').
_CAMERA_CLAUSE = re.compile(r",? the camera (?:pans|zooms) \w+|\s*The camera (?:pans \w+|zooms \w+|"
                            r"is still)\.?")


def without_camera(caption: str) -> str:
  """The caption with its camera clause removed: 'a red circle moving right over a photo of a
  cat, the camera pans left' -> 'a red circle moving right over a photo of a cat'. What a
  camera-path model is asked in `vdm eval control`, and what it trains on with
  control.camera_caption_dropout."""
  return _CAMERA_CLAUSE.sub("", caption).strip()


def _objects_clause(scene: scenes.Scene) -> str:
  first, *rest = scene.objects
  text = f"{_a(subject(first))} {action(first)}"
  if rest:
    text += " while " + " and ".join(f"{_a(subject(o))} {action(o, present=True)}" for o in rest)
  return text


def short_caption(scene: scenes.Scene) -> str:
  """'a red square moving slowly left while a green circle moves quickly up on a blue
  background, the camera pans left'."""
  text = f"{_objects_clause(scene)} {environment(scene)}"
  cam = camera(scene)
  return f"{text}, {cam}" if cam else text


def relation(scene: scenes.Scene) -> str:
  """Where the second object starts relative to the first ('' for one object)."""
  if len(scene.objects) < 2:
    return ""
  a, b = scene.objects[:2]
  (ax, ay), (bx, by) = scenes.object_track(a, 1)[0][0], scenes.object_track(b, 1)[0][0]
  dx, dy = bx - ax, by - ay
  where = (("right of" if dx > 0 else "left of") if abs(dx) >= abs(dy)
           else ("below" if dy > 0 else "above"))
  if where in ("right of", "left of"):
    where = f"to the {where}"
  return f"The {subject(b)} starts {where} the {subject(a)}"


def long_caption(scene: scenes.Scene) -> str:
  """Several sentences: action, relation, environment, camera, e.g. 'A red square moves slowly
  left while a green circle moves quickly up. The green circle starts to the right of the red
  square. The background is a photo of a cat. The camera pans left.'"""
  first, *rest = scene.objects
  text = _a(subject(first)).capitalize() + f" {action(first, present=True)}"
  if rest:
    text += " while " + " and ".join(f"{_a(subject(o))} {action(o, present=True)}" for o in rest)
  sentences = [text]
  rel = relation(scene)
  if rel:
    sentences.append(rel)
  env = environment(scene)
  kind = scenes.BACKGROUNDS[scene.background]
  if kind == "solid":
    sentences.append(f"The background is {scenes.COLOR_NAMES[scene.bg_colors[0]]}")
  else:
    sentences.append("The background is " + env.split(" ", 1)[1])
  cam = camera(scene)
  sentences.append(cam[0].upper() + cam[1:] if cam else "The camera is still")
  return ". ".join(sentences) + "."


def caption_corpus(seed: int, num: int, height: int = 64, width: int = 64,
                   frames: int = 16) -> list[str]:
  """`num` short and long captions of train scenes (tokenizer training); deterministic."""
  rng = np.random.default_rng([seed, 2000, 0])
  out = []
  while len(out) < num:
    scene = scenes.sample_scene(rng, height, width, frames, "train")
    out.extend([short_caption(scene), long_caption(scene)])
  return out[:num]

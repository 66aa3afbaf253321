"""The `simple` dataset, the spine's data (`data.kind = 'simple'`, configs/spine.py): one
coloured shape sliding over a flat background, with a caption and ground truth.

`simple` is the dataset's one name: this module generates its clips and captions,
`vdm.data.simple_builder.SimpleVideos` stores them as a TFDS dataset.

Pure numpy and deterministic from a seed, so the same clips can be regenerated anywhere (TFDS
builder, tests, evaluation) without storing them. Every clip is fully described by a `ClipSpec`;
the caption names its colour, shape, direction and background, and the ground truth (object centre
per frame) is what the pixel-based adherence metric in `vdm.eval.adherence` is checked against.

Coordinates: x is the column, y the row, both in pixels, with pixel (row i, column j) centred at
(x=j, y=i). Image y grows downward, so 'up' means decreasing y.

Wrapped clips (`wrap=True`, `config.data.wrap`): the frame is a torus, so an object leaving one
edge re-enters at the opposite one. The object can start anywhere and keeps its caption's motion
for any number of frames: a clip 16 times the training length has ground truth too (the
long-clip coherence suite, `vdm.eval.coherence`, is checked against such clips). The centre
path stays unwrapped (it keeps growing past the edge); the pixels show it modulo the frame.
"""
import dataclasses
from typing import Iterator

import numpy as np

# Saturated, well separated colours: every pair differs by at least 255 in one channel, so a
# blurry, noisy generated clip still maps unambiguously to the nearest palette entry.
COLORS = (
    ("red", (255, 0, 0)),
    ("green", (0, 255, 0)),
    ("blue", (0, 0, 255)),
    ("yellow", (255, 255, 0)),
    ("white", (255, 255, 255)),
    ("magenta", (255, 0, 255)),
)
COLOR_NAMES = tuple(name for name, _ in COLORS)
PALETTE = np.array([rgb for _, rgb in COLORS], dtype=np.uint8)  # [6, 3]
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = ("left", "right", "up", "down")
# Unit motion vector (dx, dy) per direction; y grows downward.
DIRECTION_VECTORS = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)], dtype=np.float64)  # [4, 2]
# Verb phrases; each keeps the bare direction word so captions stay unambiguous.
PHRASINGS = ("moving {}", "going {}", "sliding {}", "that moves {}")
SPLITS = ("train", "test")

_RADIUS_FRACTION = (0.12, 0.2)  # of the short side
_TRAVEL_FRACTION = (0.35, 0.55)  # of the frame extent along the motion axis


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """Everything that determines one clip.

  color, background: indices into COLORS (never equal); shape: index into SHAPES; direction:
  index into DIRECTIONS; radius: object radius in pixels; start: (x, y) centre at frame 0;
  speed: pixels per frame along the direction; phrasing: index into PHRASINGS for the caption;
  wrap: the clip is rendered on a torus (see the module docstring).
  """
  color: int
  shape: int
  direction: int
  background: int
  radius: float
  start: tuple[float, float]
  speed: float
  phrasing: int = 0
  wrap: bool = False


def is_held_out(color: int, shape: int, direction: int, background: int) -> bool:
  """Whether a composition belongs to the test split (~1/7 of all compositions).

  A linear code mod 7 leaves every single colour, shape and direction value (and most pairs) in
  train, so the test split measures compositional generalisation rather than unseen words.
  """
  return (color + 2 * shape + 3 * direction + 5 * background) % 7 == 0


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def sample_spec(rng: np.random.Generator, height: int, width: int, frames: int,
                split: str, *, wrap: bool = False) -> ClipSpec:
  """Draws a clip whose object stays fully inside the [height, width] frame for all frames
  (wrap=False), or one on a torus that starts anywhere (wrap=True; same speeds).

  'train' never returns a held-out composition; 'test' returns only held-out ones.
  """
  _check_split(split)
  if frames < 2:
    raise ValueError(f"frames must be >= 2 to show motion, got {frames}")
  want_held_out = split == "test"
  while True:
    color = int(rng.integers(len(COLORS)))
    # Background drawn from the other colours so the object is always visible.
    background = int(rng.integers(len(COLORS) - 1))
    background += background >= color
    shape = int(rng.integers(len(SHAPES)))
    direction = int(rng.integers(len(DIRECTIONS)))
    if is_held_out(color, shape, direction, background) == want_held_out:
      break

  radius = float(rng.uniform(*_RADIUS_FRACTION) * min(height, width))
  horizontal = DIRECTIONS[direction] in ("left", "right")
  along, across = (width, height) if horizontal else (height, width)
  # Centres live in [r, size - 1 - r] so every pixel of the object is inside the frame; travel
  # is clamped to that room (only matters at tiny resolutions such as 16x16).
  room = along - 1 - 2 * radius
  travel = min(float(rng.uniform(*_TRAVEL_FRACTION) * along), room)
  speed = travel / (frames - 1)
  first = float(rng.uniform(radius, radius + room - travel))
  sign = DIRECTION_VECTORS[direction].sum()
  along_start = first if sign > 0 else first + travel
  across_pos = float(rng.uniform(radius, across - 1 - radius))
  start = (along_start, across_pos) if horizontal else (across_pos, along_start)
  if wrap:  # anywhere on the torus; drawn after the rest, so wrap=False clips are unchanged
    start = (float(rng.uniform(0, width)), float(rng.uniform(0, height)))
  phrasing = int(rng.integers(len(PHRASINGS)))
  return ClipSpec(color=color, shape=shape, direction=direction, background=background,
                  radius=radius, start=start, speed=speed, phrasing=phrasing, wrap=bool(wrap))


def speed_range(height: int, width: int, frames: int, direction: int) -> tuple[float, float]:
  """(lowest, highest) speed in pixels per frame that `sample_spec` draws for clips of `frames`
  frames moving along `direction`: what a caption's motion means in this world (its travel
  over a clip is 35-55 % of the frame along the motion; clamped only at tiny sizes)."""
  along = width if DIRECTIONS[direction] in ("left", "right") else height
  return tuple(f * along / (frames - 1) for f in _TRAVEL_FRACTION)


def caption(spec: ClipSpec) -> str:
  """Lowercase caption, e.g. 'a red circle moving right on a blue background'."""
  motion = PHRASINGS[spec.phrasing].format(DIRECTIONS[spec.direction])
  return (f"a {COLOR_NAMES[spec.color]} {SHAPES[spec.shape]} {motion} "
          f"on a {COLOR_NAMES[spec.background]} background")


def centers(spec: ClipSpec, frames: int) -> np.ndarray:
  """Object centre per frame, float32 [T, 2] as (x, y)."""
  t = np.arange(frames, dtype=np.float64)[:, None]
  path = np.asarray(spec.start, np.float64) + t * spec.speed * DIRECTION_VECTORS[spec.direction]
  return path.astype(np.float32)


def shape_mask(shape: int, cx: float, cy: float, radius: float, height: int,
               width: int, *, wrap: bool = False) -> np.ndarray:
  """Boolean [H, W] mask of one shape centred at (cx, cy); wrap: on the torus (offsets taken
  to the nearest copy of the centre, so any cx, cy works)."""
  dx = np.arange(width, dtype=np.float64)[None, :] - cx
  dy = np.arange(height, dtype=np.float64)[:, None] - cy
  if wrap:
    dx = (dx + width / 2) % width - width / 2
    dy = (dy + height / 2) % height - height / 2
  name = SHAPES[shape]
  if name == "circle":
    return dx**2 + dy**2 <= radius**2
  if name == "square":
    return (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
  if name == "triangle":
    # Upward equilateral triangle inscribed in the circle: apex at dy = -r, base at dy = r/2.
    # Its centroid equals the circle centre, so `center` is also the mask centroid.
    slope = np.sqrt(3.0)
    return (dy <= radius / 2) & (slope * dx - dy <= radius) & (-slope * dx - dy <= radius)
  raise ValueError(f"shape must be in [0, {len(SHAPES)}), got {shape}")


def render_clip(spec: ClipSpec, height: int, width: int,
                frames: int) -> tuple[np.ndarray, dict]:
  """Renders a clip (no anti-aliasing).

  Returns (video uint8 [T, H, W, 3], truth) where truth holds 'center' float32 [T, 2] (x, y;
  unwrapped for a wrapped spec),
  'radius' float32 and the int indices 'color', 'shape', 'direction', 'background'.
  """
  path = centers(spec, frames)
  video = np.empty((frames, height, width, 3), np.uint8)
  video[:] = PALETTE[spec.background]
  for t, (cx, cy) in enumerate(path):
    video[t][shape_mask(spec.shape, cx, cy, spec.radius, height, width,
                        wrap=spec.wrap)] = PALETTE[spec.color]
  truth = dict(center=path, radius=np.float32(spec.radius), color=spec.color, shape=spec.shape,
               direction=spec.direction, background=spec.background)
  return video, truth


def switch_color(video: np.ndarray, old: int, new: int, start: int) -> np.ndarray:
  """The clip with its object turning from palette colour `old` to `new` at frame `start` (a
  prompt switch, for training prompt timelines: `control.prompt_switch_prob`).

  video uint8 [T, H, W, 3] (not modified); returns a copy in which every pixel of colour `old`
  in frames >= start is `new`. Exact: clips have no anti-aliasing, and a clip's background is
  never its object's colour.
  """
  out = np.array(video, copy=True)
  tail = out[start:]
  tail[np.all(tail == PALETTE[old], axis=-1)] = PALETTE[new]
  return out


def switched_caption(text: str, old: int, new: int) -> str:
  """A `caption` with its object's colour word `old` replaced by `new` (palette indices)."""
  prefix = f"a {COLOR_NAMES[old]} "
  if not text.startswith(prefix):
    raise ValueError(f"caption {text!r} does not start with {prefix!r}")
  return f"a {COLOR_NAMES[new]} " + text[len(prefix):]


def latent_motion(shape: int, center: np.ndarray, radius: float, height: int, width: int, *,
                  temporal_stride: int, spatial_stride: int) -> tuple[np.ndarray, np.ndarray]:
  """The exact motion of a clip on its latent grid (motion supervision; vdm.diffusion's
  temporal_consistency_loss with a flow).

  center float [T, 2] (x, y) pixel path of the object; latent frame l shows pixel frame l * td
  (the causal VAE: frame 0 alone, then groups of td ending at l * td). Returns the backward flow
  float32 [L-1, h, w, 2] in latent cells (the object's displacement on cells it covers at l+1,
  0 on background) and valid bool [L-1, h, w]: cells fully inside the object at l+1 whose source
  lies in the frame, and background cells the object covers at neither l nor l+1 (edges and
  disoccluded cells are left out).
  """
  td, sd = temporal_stride, spatial_stride
  h, w = height // sd, width // sd
  pixel_frames = np.arange(0, len(center), td)
  cover = np.stack([shape_mask(shape, *center[f], radius, height, width)
                    .reshape(h, sd, w, sd).mean(axis=(1, 3)) for f in pixel_frames])
  step = np.diff(center[pixel_frames].astype(np.float64), axis=0) / sd  # [L-1, 2] cells
  rows, cols = np.mgrid[0:h, 0:w]
  flow = np.where(cover[1:, ..., None] > 0, step[:, None, None, :], 0.0)
  src_x, src_y = cols[None] - step[:, 0, None, None], rows[None] - step[:, 1, None, None]
  inside = (src_x >= 0) & (src_x <= w - 1) & (src_y >= 0) & (src_y <= h - 1)
  valid = ((cover[1:] == 1.0) & inside) | ((cover[1:] == 0.0) & (cover[:-1] == 0.0))
  return flow.astype(np.float32), valid


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The generator for example `index`: depends only on (seed, split, index)."""
  _check_split(split)
  return np.random.default_rng([seed, SPLITS.index(split), index])


def make_example(seed: int, split: str, index: int, height: int, width: int,
                 frames: int, *, wrap: bool = False) -> dict:
  """One example: 'video' uint8 [T, H, W, 3], 'caption' str, and the render_clip truth."""
  spec = sample_spec(example_rng(seed, split, index), height, width, frames, split, wrap=wrap)
  video, truth = render_clip(spec, height, width, frames)
  return dict(video=video, caption=caption(spec), **truth)


def generate_examples(seed: int, split: str, num: int, height: int, width: int,
                      frames: int, *, wrap: bool = False) -> Iterator[tuple[int, dict]]:
  """Yields (index, example) for index in [0, num); see make_example for the example dict."""
  for i in range(num):
    yield i, make_example(seed, split, i, height, width, frames, wrap=wrap)


def long_example(seed: int, index: int, height: int, width: int, frames: int, length: int, *,
                 wrap: bool = True) -> dict:
  """Test example `index` (as `make_example` draws it for `frames`-frame clips) rendered
  `length` times as long, 1 + (frames - 1) * length frames at the same speed: the ground truth
  of a long rollout of its caption (on the torus, where every length has one)."""
  spec = sample_spec(example_rng(seed, "test", index), height, width, frames, "test", wrap=wrap)
  video, truth = render_clip(spec, height, width, 1 + (frames - 1) * length)
  return dict(video=video, caption=caption(spec), speed=np.float32(spec.speed), **truth)


def caption_corpus(seed: int, num: int, split: str = "train") -> list[str]:
  """`num` captions of `split`'s compositions, cycling through every phrasing (tokenizer and
  text-encoder training on 'train'; 'test' holds compositions never in it)."""
  # A split id no example uses, so the corpus is independent of the clips themselves.
  rng = np.random.default_rng([seed, len(SPLITS), SPLITS.index(split)])
  out = []
  for i in range(num):
    spec = sample_spec(rng, 64, 64, 2, split)
    out.append(caption(dataclasses.replace(spec, phrasing=i % len(PHRASINGS))))
  return out

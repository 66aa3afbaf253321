"""The synthetic benchmark: 1-3 objects with known motion over solid, gradient or photo
backgrounds, seen by a panning/zooming camera, with exact per-frame ground truth.

Pure numpy and deterministic from (seed, split, index). A clip is fully described by a `Scene`;
`render_scene` turns it into pixels and ground truth, `captions.short_caption/long_caption` into
text, and `scene_examples` puts the two together into the dataset's examples. Nothing is
anti-aliased, so every pixel belongs to exactly one object or the background and the ground
truth is exact (see `object_mask`, `render_background`, `optical_flow`).

Coordinates: x is the column, y the row, pixel (row i, column j) sits at (x=j, y=i), y grows
downward. Objects move in *world* coordinates; the camera maps world to image by
`image = s * world + (tx, ty)` with per-frame (s, tx, ty) (frame 0 is the identity).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from vdm.data import assets

COLORS = (
    ("red", (255, 0, 0)), ("green", (0, 200, 0)), ("blue", (0, 0, 255)),
    ("yellow", (255, 255, 0)), ("cyan", (0, 255, 255)), ("magenta", (255, 0, 255)),
    ("white", (255, 255, 255)), ("black", (0, 0, 0)), ("orange", (255, 128, 0)),
    ("purple", (128, 0, 255)),
)
COLOR_NAMES = tuple(name for name, _ in COLORS)
PALETTE = np.array([rgb for _, rgb in COLORS], dtype=np.uint8)  # [10, 3]
SHAPES = ("circle", "square", "triangle", "star", "ring", "digit")
MOTIONS = ("still", "left", "right", "up", "down", "up-left", "up-right", "down-left",
           "down-right", "bounce", "circle", "grow", "shrink", "rotate")
# Unit-per-axis step (dx, dy) of the linear motions; y grows downward.
MOTION_VECTORS = {"still": (0, 0), "left": (-1, 0), "right": (1, 0), "up": (0, -1),
                  "down": (0, 1), "up-left": (-1, -1), "up-right": (1, -1),
                  "down-left": (-1, 1), "down-right": (1, 1)}
SPEEDS = ("slow", "fast")
BACKGROUNDS = ("solid", "gradient", "texture")
CAMERAS = ("static", "pan-left", "pan-right", "pan-up", "pan-down", "zoom-in", "zoom-out")
SPLITS = ("train", "test", "long")
MAX_OBJECTS = 3
# Motions that stay bounded however long the clip: the only ones the `long` split uses.
LONG_MOTIONS = ("still", "bounce", "circle", "rotate")
_ROTATION_INVARIANT = ("circle", "ring")


def is_valid(shape: int, motion: int) -> bool:
  """A rotating circle or ring would look still, so that composition is never drawn."""
  return not (MOTIONS[motion] == "rotate" and SHAPES[shape] in _ROTATION_INVARIANT)


def is_held_out(color: int, shape: int, motion: int) -> bool:
  """Whether a colour x shape x motion composition is reserved for the `test` split.

  A linear code mod 7 holds out ~1/7 of the compositions while every single colour, shape and
  motion (and most pairs) still occurs in train: `test` measures composition, not new words.
  """
  return (color + 3 * shape + 5 * motion) % 7 == 3


def held_out_compositions() -> list[tuple[str, str, str]]:
  """The listed (colour, shape, motion) names of every held-out valid composition."""
  return [(COLOR_NAMES[c], SHAPES[s], MOTIONS[m]) for c in range(len(COLORS))
          for s in range(len(SHAPES)) for m in range(len(MOTIONS))
          if is_valid(s, m) and is_held_out(c, s, m)]


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
  """One object. Positions/sizes are world pixels; rates are per frame.

  digit: index into assets.mnist_digits() (-1 unless shape is 'digit'); start: centre (x, y) at
  frame 0; velocity: (vx, vy) for linear and bounce motions; bounds: (x_lo, x_hi, y_lo, y_hi)
  the centre bounces within; orbit: (cx, cy, radius, angular speed, phase) for 'circle';
  growth: radius change per frame; spin: rotation (radians, clockwise on screen) per frame.
  """
  color: int
  shape: int
  motion: int
  speed: int
  radius: float
  start: tuple[float, float]
  digit: int = -1
  velocity: tuple[float, float] = (0.0, 0.0)
  bounds: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
  orbit: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)
  growth: float = 0.0
  angle: float = 0.0
  spin: float = 0.0


@dataclasses.dataclass(frozen=True)
class Scene:
  """Everything that determines one clip; objects are listed in draw order (last on top).

  background: index into BACKGROUNDS; bg_colors: (a, b) palette indices (solid uses a; the
  gradient ramps a -> b along bg_angle); texture: index into assets.TEXTURES, sampled at
  texture_origin + world * texture_scale; camera: index into CAMERAS with its total pan (world
  pixels over the clip) or zoom factor in camera_amount.
  """
  height: int
  width: int
  frames: int
  objects: tuple[ObjectSpec, ...]
  background: int
  bg_colors: tuple[int, int] = (0, 0)
  bg_angle: float = 0.0
  texture: int = 0
  texture_origin: tuple[float, float] = (0.0, 0.0)
  texture_scale: float = 1.0
  camera: int = 0
  camera_amount: float = 0.0
  camera_speed: int = 0


# ---------------------------------------------------------------------------------------------
# Geometry: camera, trajectories, masks.

def camera_transforms(scene: Scene) -> np.ndarray:
  """Per-frame camera float64 [T, 3] as (s, tx, ty): image = s * world + (tx, ty)."""
  t = np.arange(scene.frames, dtype=np.float64)
  frac = t / max(scene.frames - 1, 1)
  s = np.ones_like(t)
  tx = np.zeros_like(t)
  ty = np.zeros_like(t)
  name = CAMERAS[scene.camera]
  # The camera moving left makes the content slide right on screen, and so on.
  if name == "pan-left":
    tx = scene.camera_amount * frac
  elif name == "pan-right":
    tx = -scene.camera_amount * frac
  elif name == "pan-up":
    ty = scene.camera_amount * frac
  elif name == "pan-down":
    ty = -scene.camera_amount * frac
  elif name in ("zoom-in", "zoom-out"):
    sign = 1.0 if name == "zoom-in" else -1.0
    s = scene.camera_amount ** (sign * frac)  # geometric: constant zoom rate
    cx, cy = (scene.width - 1) / 2, (scene.height - 1) / 2
    tx, ty = cx * (1 - s), cy * (1 - s)
  return np.stack([s, tx, ty], axis=-1)


def _triangle_wave(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Position of a point moving with unfolded coordinate u, reflected between lo and hi."""
  span = hi - lo
  if span <= 0:
    return np.full_like(u, lo)
  return lo + span - np.abs(np.mod(u - lo, 2 * span) - span)


def object_track(obj: ObjectSpec, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """World (centre float64 [T, 2], radius [T], angle [T]) of one object."""
  t = np.arange(frames, dtype=np.float64)
  name = MOTIONS[obj.motion]
  start = np.asarray(obj.start, np.float64)
  if name == "bounce":
    x = _triangle_wave(start[0] + obj.velocity[0] * t, obj.bounds[0], obj.bounds[1])
    y = _triangle_wave(start[1] + obj.velocity[1] * t, obj.bounds[2], obj.bounds[3])
    center = np.stack([x, y], -1)
  elif name == "circle":
    ox, oy, rad, omega, phase = obj.orbit
    a = phase + omega * t
    center = np.stack([ox + rad * np.cos(a), oy + rad * np.sin(a)], -1)
  else:
    center = start + t[:, None] * np.asarray(obj.velocity, np.float64)
  radius = obj.radius + obj.growth * t
  angle = obj.angle + obj.spin * t
  return center, radius, angle


def _star_polygon() -> np.ndarray:
  """Five-pointed star, unit outer radius, one point up: vertices float64 [10, 2]."""
  a = -np.pi / 2 + np.arange(10) * np.pi / 5
  r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
  return np.stack([r * np.cos(a), r * np.sin(a)], -1)


_STAR = _star_polygon()


def _inside_polygon(ux: np.ndarray, uy: np.ndarray, poly: np.ndarray) -> np.ndarray:
  """Even-odd point-in-polygon test, vectorised over points."""
  inside = np.zeros(ux.shape, bool)
  for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0)):
    crosses = (y0 > uy) != (y1 > uy)
    with np.errstate(divide="ignore", invalid="ignore"):
      xcross = x0 + (uy - y0) * (x1 - x0) / (y1 - y0)
    inside ^= crosses & (ux < xcross)
  return inside


def unit_shape_mask(shape: int, ux: np.ndarray, uy: np.ndarray, digit: int = -1) -> np.ndarray:
  """Whether object-frame points (ux, uy) (unit radius, unrotated) lie inside the shape."""
  name = SHAPES[shape]
  if name == "circle":
    return ux**2 + uy**2 <= 1.0
  if name == "ring":
    d2 = ux**2 + uy**2
    return (d2 <= 1.0) & (d2 >= 0.55**2)
  if name == "square":
    return (np.abs(ux) <= 1.0) & (np.abs(uy) <= 1.0)
  if name == "triangle":
    slope = np.sqrt(3.0)
    return (uy <= 0.5) & (slope * ux - uy <= 1.0) & (-slope * ux - uy <= 1.0)
  if name == "star":
    return _inside_polygon(ux, uy, _STAR)
  if name == "digit":
    image = assets.mnist_digits()[0][digit]
    # The 28x28 digit spans [-1, 1]^2; nearest pixel, ink where brighter than half.
    col = np.floor((ux + 1.0) * 14.0).astype(np.int64)
    row = np.floor((uy + 1.0) * 14.0).astype(np.int64)
    ok = (col >= 0) & (col < 28) & (row >= 0) & (row < 28)
    return ok & (image[np.clip(row, 0, 27), np.clip(col, 0, 27)] > 127)
  raise ValueError(f"shape must be in [0, {len(SHAPES)}), got {shape}")


def object_mask(shape: int, center, radius: float, angle: float, height: int, width: int,
                digit: int = -1) -> np.ndarray:
  """Boolean [H, W] amodal mask of one object at image centre (x, y), radius and angle."""
  dx = np.arange(width, dtype=np.float64)[None, :] - center[0]
  dy = np.arange(height, dtype=np.float64)[:, None] - center[1]
  c, s = np.cos(angle), np.sin(angle)
  # Rotate image offsets back by `angle` into the object's own frame.
  ux = (c * dx + s * dy) / radius
  uy = (-s * dx + c * dy) / radius
  return unit_shape_mask(shape, ux, uy, digit)


def render_background(scene: Scene, camera: np.ndarray) -> np.ndarray:
  """Background uint8 [T, H, W, 3] seen through camera [T, 3] (nearest-neighbour sampling)."""
  h, w = scene.height, scene.width
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
  out = np.empty((len(camera), h, w, 3), np.uint8)
  kind = BACKGROUNDS[scene.background]
  for t, (s, tx, ty) in enumerate(camera):
    wx, wy = (xs - tx) / s, (ys - ty) / s
    if kind == "solid":
      out[t] = PALETTE[scene.bg_colors[0]]
    elif kind == "gradient":
      ax, ay = np.cos(scene.bg_angle), np.sin(scene.bg_angle)
      # The ramp spans the frame-0 view along the angle, and clamps outside it.
      proj = (wx - (w - 1) / 2) * ax + (wy - (h - 1) / 2) * ay
      half = 0.5 * (abs(ax) * (w - 1) + abs(ay) * (h - 1))
      f = np.clip(0.5 + proj / (2 * half), 0.0, 1.0)[..., None]
      a = PALETTE[scene.bg_colors[0]].astype(np.float64)
      b = PALETTE[scene.bg_colors[1]].astype(np.float64)
      out[t] = np.round(a + f * (b - a)).astype(np.uint8)
    else:
      photo = assets.texture(scene.texture)
      ph, pw = photo.shape[:2]
      u = scene.texture_origin[0] + wx * scene.texture_scale
      v = scene.texture_origin[1] + wy * scene.texture_scale
      col = np.mod(np.floor(u).astype(np.int64), pw)
      row = np.mod(np.floor(v).astype(np.int64), ph)
      out[t] = photo[row, col]
  return out


def render_scene(scene: Scene) -> tuple[np.ndarray, dict]:
  """Renders a clip with per-frame ground truth (K = MAX_OBJECTS slots, unused ones zero).

  Returns (video uint8 [T, H, W, 3], truth) with truth:
    center float32 [T, K, 2] image (x, y); radius, angle float32 [T, K] (image pixels, radians);
    box float32 [T, K, 4] (x0, y0, x1, y1) inclusive pixel box of the amodal mask inside the
      frame, -1 where none of it is inside;
    visible bool [T, K]: some pixel of the object is on top; present bool [K];
    segmentation uint8 [T, H, W]: 0 background, k + 1 where object k is the top-most;
    color, shape, motion, speed, digit, digit_label, draw_order int32 [K] (-1 where absent);
    camera float32 [T, 3] (s, tx, ty); background, bg_color_a, bg_color_b, texture,
      camera_kind int32 scalars.
  """
  T, H, W, K = scene.frames, scene.height, scene.width, MAX_OBJECTS
  camera = camera_transforms(scene)
  video = render_background(scene, camera)
  seg = np.zeros((T, H, W), np.uint8)
  center = np.zeros((T, K, 2), np.float32)
  radius = np.zeros((T, K), np.float32)
  angle = np.zeros((T, K), np.float32)
  box = np.full((T, K, 4), -1.0, np.float32)
  ints = {k: np.full((K,), -1, np.int32) for k in
          ("color", "shape", "motion", "speed", "digit", "digit_label", "draw_order")}
  labels = assets.mnist_digits()[1] if any(SHAPES[o.shape] == "digit"
                                           for o in scene.objects) else None
  for k, obj in enumerate(scene.objects):
    wc, wr, wa = object_track(obj, T)
    ic = camera[:, None, 0] * wc + camera[:, 1:]
    ir = camera[:, 0] * wr
    center[:, k], radius[:, k], angle[:, k] = ic, ir, wa
    for t in range(T):
      # Masks are drawn from the recorded float32 truth, so re-rendering it is exact.
      mask = object_mask(obj.shape, center[t, k], radius[t, k], angle[t, k], H, W, obj.digit)
      video[t][mask] = PALETTE[obj.color]
      seg[t][mask] = k + 1
      ys, xs = np.nonzero(mask)
      if len(xs):
        box[t, k] = (xs.min(), ys.min(), xs.max(), ys.max())
    ints["color"][k], ints["shape"][k], ints["motion"][k] = obj.color, obj.shape, obj.motion
    ints["speed"][k], ints["digit"][k], ints["draw_order"][k] = obj.speed, obj.digit, k
    if obj.digit >= 0:
      ints["digit_label"][k] = labels[obj.digit]
  present = np.arange(K) < len(scene.objects)
  visible = np.stack([(seg == k + 1).any(axis=(1, 2)) for k in range(K)], -1)
  truth = dict(center=center, radius=radius, angle=angle, box=box, visible=visible,
               present=present, segmentation=seg, camera=camera.astype(np.float32),
               background=np.int32(scene.background), bg_color_a=np.int32(scene.bg_colors[0]),
               bg_color_b=np.int32(scene.bg_colors[1]), texture=np.int32(scene.texture),
               camera_kind=np.int32(scene.camera), **ints)
  return video, truth


def optical_flow(truth: dict) -> np.ndarray:
  """Exact forward flow float32 [T-1, H, W, 2] (dx, dy): where each pixel's surface point is in
  the next frame. Object pixels follow their object's similarity transform (centre, radius,
  angle); background pixels follow the camera.
  """
  seg, cam = truth["segmentation"], truth["camera"].astype(np.float64)
  T, H, W = seg.shape
  ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
  flow = np.zeros((T - 1, H, W, 2), np.float32)
  for t in range(T - 1):
    (s0, tx0, ty0), (s1, tx1, ty1) = cam[t], cam[t + 1]
    nx = s1 / s0 * (xs - tx0) + tx1
    ny = s1 / s0 * (ys - ty0) + ty1
    for k in range(seg.max(initial=0)):
      m = seg[t] == k + 1
      if not m.any():
        continue
      c0, c1 = truth["center"][t, k].astype(np.float64), truth["center"][t + 1, k]
      ratio = float(truth["radius"][t + 1, k]) / float(truth["radius"][t, k])
      da = float(truth["angle"][t + 1, k]) - float(truth["angle"][t, k])
      dx, dy = xs[m] - c0[0], ys[m] - c0[1]
      nx[m] = c1[0] + ratio * (np.cos(da) * dx - np.sin(da) * dy)
      ny[m] = c1[1] + ratio * (np.sin(da) * dx + np.cos(da) * dy)
    flow[t, ..., 0], flow[t, ..., 1] = nx - xs, ny - ys
  return flow


# ---------------------------------------------------------------------------------------------
# Sampling.

_PAN_FRACTION = {0: (0.1, 0.18), 1: (0.22, 0.32)}  # of the extent along the pan, per speed
_ZOOM_FACTOR = {0: (1.2, 1.35), 1: (1.45, 1.65)}
_TRAVEL_FRACTION = {0: (0.15, 0.28), 1: (0.4, 0.6)}  # linear: of the safe box, per clip
_BOUNCE_PATH = {0: (0.5, 0.8), 1: (1.4, 2.2)}  # bounce: path length / box extent, per clip
_ORBIT_TURNS = {0: (0.4, 0.6), 1: (0.9, 1.3)}  # circle: turns per clip
_SPIN_TURNS = {0: (0.2, 0.35), 1: (0.6, 0.9)}  # rotate: turns per clip
_GROWTH = {0: 1.5, 1: 2.2}  # grow/shrink: radius ratio over a clip
_RADIUS_FRACTION = (0.1, 0.16)  # of the safe box's short side, one object
_MIN_RADIUS, _MIN_DIGIT_RADIUS = 2.5, 7.0  # pixels
_DIGIT_SCALE = 1.4


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def safe_box(scene: Scene) -> tuple[float, float, float, float]:
  """World box (x_lo, x_hi, y_lo, y_hi) inside the camera's view on every frame."""
  cam = camera_transforms(scene)
  s, tx, ty = cam[:, 0], cam[:, 1], cam[:, 2]
  x_lo, x_hi = np.max(-tx / s), np.min((scene.width - 1 - tx) / s)
  y_lo, y_hi = np.max(-ty / s), np.min((scene.height - 1 - ty) / s)
  return float(x_lo), float(x_hi), float(y_lo), float(y_hi)


def _place(rng, lo: float, hi: float, r: float, travel: float) -> float:
  """A start coordinate so [start, start + travel] +- r stays within [lo, hi] (centre if tight)."""
  a, b = lo + r, hi - r - travel
  return float(rng.uniform(a, b)) if b > a else (lo + hi - travel) / 2


def _sample_motion(rng, shape: int, motion: int, speed: int, radius: float, box, motion_frames,
                   digit: int, color: int) -> ObjectSpec:
  """Object whose whole extent stays inside `box` for `motion_frames` frames."""
  x_lo, x_hi, y_lo, y_hi = box
  steps = max(motion_frames - 1, 1)
  # Square-like shapes (square, digit) reach sqrt(2) r at their corners once tilted; placing
  # by that reach keeps every pixel of the object inside the box.
  reach = radius * (np.sqrt(2.0) if SHAPES[shape] in ("square", "digit") else 1.0)
  name = MOTIONS[motion]
  kw = dict(color=color, shape=shape, motion=motion, speed=speed, radius=radius, digit=digit)
  if shape != SHAPES.index("circle") and name != "rotate":
    kw["angle"] = float(rng.uniform(-0.3, 0.3))  # a slight tilt; constant unless rotating
  if name in MOTION_VECTORS:
    vx, vy = MOTION_VECTORS[name]
    if name == "still":
      travel = 0.0
    else:
      room = min((x_hi - x_lo) if vx else np.inf, (y_hi - y_lo) if vy else np.inf) - 2 * reach
      extent = min((x_hi - x_lo) if vx else np.inf, (y_hi - y_lo) if vy else np.inf)
      travel = max(0.0, min(float(rng.uniform(*_TRAVEL_FRACTION[speed])) * extent, room))
    sx = _place(rng, x_lo, x_hi, reach, travel if vx else 0.0)
    sy = _place(rng, y_lo, y_hi, reach, travel if vy else 0.0)
    # A negative direction starts at the far end of its travel.
    start = (sx + (travel if vx < 0 else 0.0), sy + (travel if vy < 0 else 0.0))
    return ObjectSpec(start=start, velocity=(vx * travel / steps, vy * travel / steps), **kw)
  if name == "bounce":
    bounds = (x_lo + reach, x_hi - reach, y_lo + reach, y_hi - reach)
    heading = float(rng.uniform(0, 2 * np.pi))
    path = float(rng.uniform(*_BOUNCE_PATH[speed])) * min(x_hi - x_lo, y_hi - y_lo)
    start = (float(rng.uniform(bounds[0], max(bounds[0], bounds[1]))),
             float(rng.uniform(bounds[2], max(bounds[2], bounds[3]))))
    v = path / steps
    return ObjectSpec(start=start, velocity=(v * np.cos(heading), v * np.sin(heading)),
                      bounds=bounds, **kw)
  if name == "circle":
    short = min(x_hi - x_lo, y_hi - y_lo)
    orbit_r = max(0.0, min(float(rng.uniform(0.15, 0.3)) * short, short / 2 - reach))
    ox = _place(rng, x_lo + orbit_r, x_hi - orbit_r, reach, 0.0)
    oy = _place(rng, y_lo + orbit_r, y_hi - orbit_r, reach, 0.0)
    turns = float(rng.uniform(*_ORBIT_TURNS[speed])) * rng.choice([-1.0, 1.0])
    phase = float(rng.uniform(0, 2 * np.pi))
    start = (ox + orbit_r * np.cos(phase), oy + orbit_r * np.sin(phase))
    return ObjectSpec(start=start, orbit=(ox, oy, orbit_r, 2 * np.pi * turns / steps, phase),
                      **kw)
  if name in ("grow", "shrink"):
    small, large = radius / np.sqrt(_GROWTH[speed]), radius * np.sqrt(_GROWTH[speed])
    r0, r1 = (small, large) if name == "grow" else (large, small)
    big = large * reach / radius
    start = (_place(rng, x_lo, x_hi, big, 0.0), _place(rng, y_lo, y_hi, big, 0.0))
    kw["radius"] = r0
    return ObjectSpec(start=start, growth=(r1 - r0) / steps, **kw)
  if name == "rotate":
    start = (_place(rng, x_lo, x_hi, reach, 0.0), _place(rng, y_lo, y_hi, reach, 0.0))
    turns = float(rng.uniform(*_SPIN_TURNS[speed])) * rng.choice([-1.0, 1.0])
    return ObjectSpec(start=start, spin=2 * np.pi * turns / steps, **kw)
  raise ValueError(f"motion must be in [0, {len(MOTIONS)}), got {motion}")


def _sample_composition(rng, split: str, want_held_out: bool, taken_colors,
                        motions=MOTIONS) -> tuple[int, ...]:
  motions = [MOTIONS.index(m) for m in motions if split != "long" or m in LONG_MOTIONS]
  colors = [c for c in range(len(COLORS)) if c not in taken_colors]
  while True:
    color = int(rng.choice(colors))
    shape = int(rng.integers(len(SHAPES)))
    motion = int(rng.choice(motions))
    if is_valid(shape, motion) and is_held_out(color, shape, motion) == want_held_out:
      return color, shape, motion


def sample_scene(rng: np.random.Generator, height: int, width: int, frames: int, split: str,
                 *, motion_frames: int | None = None, max_objects: int = MAX_OBJECTS,
                 backgrounds=BACKGROUNDS, cameras=CAMERAS, motions=MOTIONS) -> Scene:
  """Draws a scene. 'train' and 'long' use only non-held-out compositions; in 'test' the first
  object's composition is held out (the others are not). 'long' keeps the camera static and
  uses LONG_MOTIONS, with rates calibrated on motion_frames (the training length), so a clip
  several times longer moves exactly as fast as a training clip. backgrounds, cameras and
  motions name the choices drawn from uniformly (a name listed twice is drawn twice as often).
  """
  _check_split(split)
  if frames < 2:
    raise ValueError(f"frames must be >= 2 to show motion, got {frames}")
  unknown = sorted(set(motions) - set(MOTIONS))
  if unknown or (split == "long" and not set(motions) & set(LONG_MOTIONS)):
    raise ValueError(f"motions must be names from {MOTIONS} (for 'long', some of "
                     f"{LONG_MOTIONS}), got {tuple(motions)}")
  if not 1 <= max_objects <= MAX_OBJECTS:
    raise ValueError(f"max_objects must be in [1, {MAX_OBJECTS}], got {max_objects}")
  motion_frames = motion_frames or frames
  background = BACKGROUNDS.index(backgrounds[int(rng.integers(len(backgrounds)))])
  camera = 0 if split == "long" else CAMERAS.index(cameras[int(rng.integers(len(cameras)))])
  camera_speed = int(rng.integers(2))
  name = CAMERAS[camera]
  if name.startswith("pan"):
    extent = width if name in ("pan-left", "pan-right") else height
    amount = float(rng.uniform(*_PAN_FRACTION[camera_speed])) * extent
  elif name.startswith("zoom"):
    amount = float(rng.uniform(*_ZOOM_FACTOR[camera_speed]))
  else:
    amount = 0.0
  scene = Scene(height=height, width=width, frames=frames, objects=(), background=background,
                camera=camera, camera_amount=amount, camera_speed=camera_speed)
  box = safe_box(scene)
  n = int(rng.integers(1, max_objects + 1))
  short = min(box[1] - box[0], box[3] - box[2])
  objects, taken = [], []
  digits = assets.digit_indices("test" if split == "test" else "train")
  for k in range(n):
    color, shape, motion = _sample_composition(rng, split, split == "test" and k == 0, taken,
                                               motions)
    taken.append(color)
    radius = float(rng.uniform(*_RADIUS_FRACTION)) * short * (1.0 if n == 1 else 0.8)
    # Below a few pixels a shape (and a 28x28 digit's strokes) stops being recognisable.
    if SHAPES[shape] == "digit":
      # MNIST ink fills only the middle ~20 of 28 pixels: enlarge so it reads as big as a shape.
      radius = max(radius * _DIGIT_SCALE, _MIN_DIGIT_RADIUS)
    radius = max(radius, _MIN_RADIUS)
    speed = 0 if MOTIONS[motion] == "still" else int(rng.integers(2))
    digit = int(rng.choice(digits)) if SHAPES[shape] == "digit" else -1
    objects.append(_sample_motion(rng, shape, motion, speed, radius, box, motion_frames, digit,
                                  color))
  free = [c for c in range(len(COLORS)) if c not in taken]
  a, b = rng.choice(free, size=2, replace=False)
  texture = int(rng.integers(len(assets.TEXTURES)))
  photo_h, photo_w = (assets.texture(texture).shape[:2] if BACKGROUNDS[background] == "texture"
                      else (1, 1))
  # Sample a crop of the photo at about its own scale for a frame ~1/2 of the photo's size.
  scale = float(rng.uniform(0.5, 0.8)) * min(photo_h, photo_w) / max(height, width)
  scale = scale if BACKGROUNDS[background] == "texture" else 1.0
  origin = (float(rng.uniform(0, photo_w)), float(rng.uniform(0, photo_h)))
  return dataclasses.replace(
      scene, objects=tuple(objects), bg_colors=(int(a), int(b)),
      bg_angle=float(rng.uniform(0, 2 * np.pi)), texture=texture, texture_origin=origin,
      texture_scale=scale)


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The generator for example `index`: depends only on (seed, split, index)."""
  _check_split(split)
  # 1000 + split id keeps these streams apart from vdm.data.simple's [seed, split, index].
  return np.random.default_rng([seed, 1000 + SPLITS.index(split), index])

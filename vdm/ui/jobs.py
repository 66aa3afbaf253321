"""The queue behind `vdm ui`: each request becomes `vdm sample` command lines, run one at a time
by one worker thread (one accelerator), with progress, cancel and a record on disk that outlives
the server.

A request is what the page sends:

    {"kind": "compare" | "sweep",
     "fields": {"prompt": ..., "seed": ..., "steps": ..., ...},   # `vdm sample`'s options
     "panes": [{"checkpoint": DIR, "mode": ...}, ...],             # compare: 1 or 2; sweep: 1
     "sweep": "guidance=1,3,5"}                                     # sweep only

Every pane (or the sweep) is parsed by `vdm sample`'s own parser and run by `vdm.generate.render`,
the code `vdm sample` runs, so a clip is the bytes of the command shown beside it, and a bad
input gets the command's own message. The output folder holds one new folder per request:

    OUT/<id>/job.json          the request, its status, its finished clips (rewritten atomically)
    OUT/<id>/a.mp4, a.json     the left pane's clip and sidecar (b: the right pane)
    OUT/<id>/sweep_guidance-1.mp4, ..., sweep_grid.png, sweep_grid.gif, sweep_grid.json

Files are never written over (a new folder per request; the writers refuse an existing name) and
each appears only once complete. A server that starts on an output folder lists what is in it;
a request that was queued or running when the last server stopped is marked interrupted, its
finished clips kept and its partial files removed.
"""
from __future__ import annotations

import collections
import glob
import json
import os
import shlex
import sys
import threading
import time
import traceback

from vdm.cli_common import UsageError, error_line

# The page's fields: `vdm sample` options shared by the panes, and those each pane sets.
FIELDS = ("prompt", "negative_prompt", "seed", "seconds", "fps", "aspect", "resolution", "steps",
          "guidance", "sampler", "chunk", "context_noise", "post")
PANE_FIELDS = ("checkpoint", "mode")
PANE_NAMES = ("a", "b")
KINDS = ("compare", "sweep")
FINISHED = ("done", "failed", "cancelled", "interrupted")


class RequestError(ValueError):
  """A request refused before it is queued; its message is the line the page shows."""


class QueueFull(RequestError):
  pass


def sample_argv(fields: dict, pane: dict, out: str, sweep: str | None = None) -> list[str]:
  """The `vdm sample` command line (without 'vdm') of one pane of a request."""
  argv = ["sample"]
  for name in FIELDS + PANE_FIELDS:
    value = pane.get(name) if name in PANE_FIELDS else fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip() and name != "prompt"):
      continue  # unset: the model's own default, as when the flag is not given
    argv += ["--" + name.replace("_", "-"), str(value)]
  argv += ["--out", out]
  return argv + (["--sweep", sweep] if sweep is not None else [])


def _check_shape(request) -> None:
  """The request's structure (not its values, which `vdm sample` checks)."""
  if not isinstance(request, dict):
    raise RequestError("vdm ui: error: a request is a JSON object")
  kind = request.get("kind")
  if kind not in KINDS:
    raise RequestError(f"vdm ui: error: kind {kind!r}: allowed {list(KINDS)}")
  unknown = sorted(set(request) - {"kind", "fields", "panes", "sweep"})
  fields, panes = request.get("fields", {}), request.get("panes")
  if not isinstance(fields, dict):
    raise RequestError("vdm ui: error: fields must be an object")
  unknown += sorted(set(fields) - set(FIELDS))
  if unknown:
    raise RequestError(f"vdm ui: error: unknown field(s) {unknown}: allowed {list(FIELDS)}")
  most = 2 if kind == "compare" else 1
  if (not isinstance(panes, list) or not 1 <= len(panes) <= most
      or not all(isinstance(p, dict) and set(p) <= set(PANE_FIELDS) for p in panes)):
    raise RequestError(f"vdm ui: error: panes must be a list of 1 to {most} objects with "
                       f"{list(PANE_FIELDS)}")
  if kind == "sweep" and not isinstance(request.get("sweep"), str):
    raise RequestError("vdm ui: error: a sweep needs sweep: 'AXIS=V1,V2,...'")


class Job:
  """One request: its command lines, status and finished clips. `state` is what job.json and
  the API hold; the runner changes it under its lock."""

  def __init__(self, job_id: str, folder: str, request: dict, argvs: list[list[str]]):
    self.folder, self.cancel_requested = folder, threading.Event()
    self.argvs = argvs
    self.state = dict(id=job_id, kind=request["kind"], request=request, status="queued",
                      created=time.time(), started=None, finished=None, progress=None,
                      clips=[], grid=None, error=None,
                      commands=["vdm " + shlex.join(a) for a in argvs])

  @property
  def id(self) -> str:
    return self.state["id"]


class Runner:
  """Runs requests one at a time on a worker thread; see the module docstring.

  out: the output folder. checkpoints: the model directories requests may name. queue_size: how
  many requests may wait (one more runs). max_models: loaded models kept for the next request.
  """

  def __init__(self, out: str, checkpoints: list[str], *, queue_size: int = 8,
               max_models: int = 2):
    if not isinstance(queue_size, int) or queue_size < 1:
      raise ValueError(f"--queue {queue_size!r} must be an integer >= 1")
    self.out, self.checkpoints = out, list(checkpoints)
    self.queue_size, self.max_models = queue_size, max_models
    os.makedirs(out, exist_ok=True)
    self.lock = threading.Condition()
    self.jobs: dict[str, Job] = {}
    self.waiting: collections.deque[Job] = collections.deque()
    self.pipes: collections.OrderedDict = collections.OrderedDict()
    self.running: Job | None = None
    self.stopping = False
    self._recover()
    self.worker = threading.Thread(target=self._work, name="vdm-ui-worker", daemon=True)
    self.worker.start()

  # ------------------------------------------------------------------ the API's side

  def submit(self, request) -> dict:
    """Checks and queues a request; returns its state. Raises RequestError with the line to
    show (a `vdm sample` message for a bad option) and creates nothing then."""
    from vdm.generate.cli import sample_parser
    from vdm.generate.render import plan
    _check_shape(request)
    for pane in request["panes"]:
      if pane.get("checkpoint") not in self.checkpoints:
        raise RequestError(f"vdm sample: error: --checkpoint {pane.get('checkpoint')!r} is not "
                           f"one of the models this page offers: {self.checkpoints}")
    with self.lock:
      self._check_room()
      job_id, folder = self._new_folder()
    try:
      if request["kind"] == "sweep":
        outs = [(request["panes"][0], os.path.join(folder, "sweep.mp4"), request["sweep"])]
      else:
        outs = [(pane, os.path.join(folder, f"{name}.mp4"), None)
                for pane, name in zip(request["panes"], PANE_NAMES)]
      argvs = [sample_argv(request.get("fields", {}), pane, out, sweep)
               for pane, out, sweep in outs]
      parser = sample_parser()
      for argv in argvs:  # everything `vdm sample` checks before it loads the model
        plan(parser.parse_args(argv[1:]))
    except ValueError as e:  # argparse's line, or what plan refuses: the command's own line
      os.rmdir(folder)
      raise RequestError(str(e) if isinstance(e, UsageError) else error_line("sample", e)) \
          from None
    job = Job(job_id, folder, request, argvs)
    with self.lock:
      try:
        self._check_room()  # again: another request may have taken the last place meanwhile
      except QueueFull:
        os.rmdir(folder)
        raise
      self.jobs[job.id] = job
      self.waiting.append(job)
      self._save(job)
      self.lock.notify_all()
      return self._snapshot(job)

  def _check_room(self) -> None:
    if len(self.waiting) >= self.queue_size:
      raise QueueFull(f"vdm ui: error: {len(self.waiting)} requests are waiting, the most "
                      f"--queue allows; cancel one or wait for one to finish")

  def cancel(self, job_id: str) -> dict:
    """Cancels a waiting request, or stops a running one at its next sampler step (its
    finished clips are kept). Raises KeyError for an unknown id."""
    with self.lock:
      job = self.jobs[job_id]
      if job in self.waiting:
        self.waiting.remove(job)
        self._finish(job, "cancelled")
      elif job is self.running:
        job.cancel_requested.set()
      return self._snapshot(job)

  def has(self, job_id: str) -> bool:
    """Whether job_id is a request of this output folder."""
    with self.lock:
      return job_id in self.jobs

  def get(self, job_id: str) -> dict:
    with self.lock:
      return self._snapshot(self.jobs[job_id])

  def list(self) -> list[dict]:
    """Every request, newest first."""
    with self.lock:
      return [self._snapshot(j) for j in sorted(self.jobs.values(),
                                                key=lambda j: j.state["created"], reverse=True)]

  def wait(self, job_id: str, timeout: float | None = None) -> dict:
    """Blocks until the request has finished (or timeout seconds); returns its state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with self.lock:
      job = self.jobs[job_id]
      while job.state["status"] not in FINISHED:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
          break
        self.lock.wait(left)
      return self._snapshot(job)

  def close(self) -> None:
    """Stops the worker after the running request (the waiting ones stay queued on disk)."""
    with self.lock:
      self.stopping = True
      self.lock.notify_all()
    self.worker.join()

  # ------------------------------------------------------------------ the worker's side

  def _work(self) -> None:
    while True:
      with self.lock:
        while not self.waiting and not self.stopping:
          self.lock.wait()
        if self.stopping:
          return
        job = self.running = self.waiting.popleft()
        job.state.update(status="running", started=time.time())
        self._save(job)
      try:
        self._run(job)
        status, error = "done", None
      except Exception as e:  # noqa: BLE001 - the worker outlives any one request
        from vdm.generate.pipeline import Cancelled
        if isinstance(e, Cancelled):
          status, error = "cancelled", None
        elif isinstance(e, (ValueError, OSError)):
          status, error = "failed", error_line("sample", e)
        else:
          traceback.print_exc(file=sys.stderr)
          status, error = "failed", f"vdm ui: internal error: {type(e).__name__}: {e}"
      with self.lock:
        self.running = None
        self._finish(job, status, error)

  def _load(self, checkpoint: str):
    """The model of a checkpoint, from the cache of the last `max_models` used."""
    from vdm.generate.pipeline import Pipeline
    if checkpoint in self.pipes:
      self.pipes.move_to_end(checkpoint)
    else:
      while len(self.pipes) >= self.max_models:
        self.pipes.popitem(last=False)
      self.pipes[checkpoint] = Pipeline.load(checkpoint)
    return self.pipes[checkpoint]

  def _run(self, job: Job) -> None:
    from vdm.generate import render
    from vdm.generate.cli import sample_parser
    from vdm.generate.sweep import parse_sweep
    parser = sample_parser()
    args = [parser.parse_args(argv[1:]) for argv in job.argvs]
    labels = ([f"sweep {parse_sweep(a.sweep)[0]}" for a in args]
              if job.state["kind"] == "sweep" else [n.upper() for n in PANE_NAMES[:len(args)]])
    clip_count = len(parse_sweep(args[0].sweep)[1]) if args[0].sweep else len(args)
    current = dict(clip=0)

    def on_step(progress):
      if job.cancel_requested.is_set():
        from vdm.generate.pipeline import Cancelled
        raise Cancelled(f"request {job.id} cancelled")
      with self.lock:
        job.state["progress"] = dict(clip=current["clip"] + 1, clips=clip_count,
                                     step=progress.step, steps=progress.steps,
                                     chunk=progress.chunk, chunks=progress.chunks)
        self.lock.notify_all()

    def on_clip(index, clip, label):
      current["clip"] += 1
      record = clip["record"]
      entry = dict(label=label, value=clip.get("value"), file=os.path.basename(clip["out"]),
                   sidecar=os.path.basename(clip["sidecar"]), record=record)
      with self.lock:
        job.state["clips"].append(entry)
        self._save(job)  # a finished clip is on record at once: a crash after it keeps it
        self.lock.notify_all()

    if job.state["kind"] == "sweep":
      result = render.run_sample(args[0], load=self._load, on_step=on_step,
                                 on_clip=lambda i, c: on_clip(i, c, labels[0]))
      with self.lock:
        job.state["grid"] = {k: os.path.basename(v) for k, v in result["grid"].items()}
      return
    # Both panes are checked against their models before either samples: a bad right pane
    # costs no left clip.
    prepared = []
    for pane_args in args:
      t0 = time.perf_counter()
      pipe = self._load(pane_args.checkpoint)
      prepared.append((pipe, render.resolve(pipe, pane_args), pane_args,
                       time.perf_counter() - t0))
    for i, (pipe, request, pane_args, load_seconds) in enumerate(prepared):
      clip = render.render(pipe, request, pane_args, load_seconds=load_seconds, on_step=on_step)
      on_clip(i, clip, labels[i])

  # ------------------------------------------------------------------ records

  def _new_folder(self) -> tuple[str, str]:
    """A new request folder, never an existing one: OUT/<YYYYmmdd-HHMMSS>-<n>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 100_000):
      job_id = f"{stamp}-{n:03d}"
      folder = os.path.join(self.out, job_id)
      try:
        os.mkdir(folder)
        return job_id, folder
      except FileExistsError:
        continue
    raise OSError(f"{self.out}: no free request folder name for {stamp}")

  def _finish(self, job: Job, status: str, error: str | None = None) -> None:
    job.state.update(status=status, finished=time.time(), error=error)
    self._save(job)
    self.lock.notify_all()

  def _save(self, job: Job) -> None:
    from vdm.provenance import write_json
    write_json(os.path.join(job.folder, "job.json"), job.state)

  def _snapshot(self, job: Job) -> dict:
    return json.loads(json.dumps(job.state, default=str))

  def _adopt_unlisted_clips(self, job: Job) -> None:
    """Lists the clips a stopped server finished but had not yet recorded: a video whose sidecar
    exists is complete (the sidecar is written after the video has its name)."""
    listed = {c["file"] for c in job.state["clips"]}
    sweep = job.state["request"].get("sweep")
    for video in sorted(glob.glob(os.path.join(job.folder, "*.mp4"))):
      name = os.path.basename(video)
      sidecar = os.path.splitext(video)[0] + ".json"
      if name in listed or not os.path.isfile(sidecar):
        continue
      try:
        with open(sidecar) as f:
          record = json.load(f)
      except (OSError, ValueError):
        continue
      if sweep:
        axis = sweep.partition("=")[0]
        label, value = f"sweep {axis}", record["request"].get(axis)
      else:
        label, value = os.path.splitext(name)[0].upper(), None
      job.state["clips"].append(dict(label=label, value=value, file=name,
                                     sidecar=os.path.basename(sidecar), record=record))

  def _recover(self) -> None:
    """Lists the requests already in the output folder; those a stopped server left queued or
    running are marked interrupted, their partial files removed, their finished clips kept."""
    for path in sorted(glob.glob(os.path.join(self.out, "*", "job.json"))):
      folder = os.path.dirname(path)
      try:
        with open(path) as f:
          state = json.load(f)
        job = Job(state["id"], folder, state["request"], [])
      except (OSError, ValueError, KeyError, TypeError):
        continue  # not a request folder of this server (or a damaged record): left alone
      job.state = state
      if state["status"] not in FINISHED:
        for partial in glob.glob(os.path.join(folder, "*.partial*")):
          os.remove(partial)
        self._adopt_unlisted_clips(job)
        state.update(status="interrupted", finished=None, progress=None,
                     error="vdm ui: the server stopped before this request finished; its "
                           "finished clips are kept")
        self._save(job)
      self.jobs[job.id] = job

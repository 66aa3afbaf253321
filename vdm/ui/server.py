"""The HTTP side of `vdm ui`: the standard library's threading server, a static page and a JSON
API over `vdm.ui.jobs.Runner` (why no web framework: docs/ui.md).

  GET  /                        the page (vdm/ui/static/)
  GET  /api/options             models (with their sample defaults), modes, samplers, aspects,
                                sweep axes
  GET  /api/jobs                every request, newest first
  POST /api/jobs                queue a request (JSON, see vdm.ui.jobs) -> 201 its state;
                                400 / 429 {"error": the line to show}
  GET  /api/jobs/ID             a request's state: status, progress, clips, grid, error
  POST /api/jobs/ID/cancel      cancel it (waiting) or stop it at its next sampler step
  GET  /files/ID/NAME           a file of a request's folder (byte ranges, for <video>)
"""
from __future__ import annotations

import http.server
import json
import mimetypes
import os
import re
import sys
import threading

from vdm.ui.jobs import RequestError, Runner

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_FILE = re.compile(r"/files/([\w.-]+)/([\w.=-]+)")
_JOB = re.compile(r"/api/jobs/([\w.-]+)(/cancel)?")


def options(checkpoints: list[str]) -> dict:
  """What the page's controls offer: the models (catalog entries: size, resolution, modes,
  sample defaults) and the allowed values of each choice."""
  from vdm.catalog import describe_model_dir
  from vdm.config import ASPECTS
  from vdm.diffusion.samplers import SAMPLERS
  from vdm.generate.modes import MODES, pipeline_modes
  from vdm.generate.sweep import SWEEP_AXES
  return dict(models=[describe_model_dir(c) for c in checkpoints],
              modes=[dict(name=m, doc=MODES[m].doc) for m in pipeline_modes()],
              samplers=list(SAMPLERS), aspects=sorted(ASPECTS), sweep_axes=list(SWEEP_AXES))


class Handler(http.server.BaseHTTPRequestHandler):
  """Routes of the module docstring; `server.runner` and `server.options` are set by
  `make_server`."""

  server_version = "vdm-ui"

  def log_message(self, format, *args):  # noqa: A002 - the base class's name
    if os.environ.get("VDM_UI_LOG") == "1":
      super().log_message(format, *args)

  def _send(self, status: int, body: bytes, content_type: str, headers=()):
    self.send_response(status)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(len(body)))
    self.send_header("Cache-Control", "no-store")
    for key, value in headers:
      self.send_header(key, value)
    self.end_headers()
    if self.command != "HEAD":
      self.wfile.write(body)

  def _json(self, status: int, payload) -> None:
    self._send(status, json.dumps(payload).encode(), "application/json")

  def _error(self, status: int, message: str) -> None:
    self._json(status, dict(error=message))

  def do_GET(self):  # noqa: N802 - the base class's name
    path = self.path.split("?")[0]
    runner = self.server.runner
    if path in ("/", "/index.html"):
      return self._static("index.html")
    if path.startswith("/static/"):
      return self._static(path[len("/static/"):])
    if path == "/api/options":
      return self._json(200, self.server.options)
    if path == "/api/jobs":
      return self._json(200, runner.list())
    match = _JOB.fullmatch(path)
    if match and not match.group(2):
      try:
        return self._json(200, runner.get(match.group(1)))
      except KeyError:
        return self._error(404, f"vdm ui: error: no request {match.group(1)!r}")
    match = _FILE.fullmatch(path)
    if match and runner.has(match.group(1)) and not match.group(2).startswith("."):
      return self._file(os.path.join(runner.out, match.group(1), match.group(2)))
    self._error(404, f"vdm ui: error: no page {path!r}")

  do_HEAD = do_GET

  def do_POST(self):  # noqa: N802 - the base class's name
    path = self.path.split("?")[0]
    runner = self.server.runner
    if path == "/api/jobs":
      try:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"null")
      except (ValueError, UnicodeDecodeError):
        return self._error(400, "vdm ui: error: the request body is not JSON")
      try:
        return self._json(201, runner.submit(request))
      except RequestError as e:
        from vdm.ui.jobs import QueueFull
        return self._error(429 if isinstance(e, QueueFull) else 400, str(e))
    match = _JOB.fullmatch(path)
    if match and match.group(2):
      try:
        return self._json(200, runner.cancel(match.group(1)))
      except KeyError:
        return self._error(404, f"vdm ui: error: no request {match.group(1)!r}")
    self._error(404, f"vdm ui: error: no page {path!r}")

  def _static(self, name: str) -> None:
    if name not in os.listdir(STATIC):  # only the page's own files, no path in the name
      return self._error(404, f"vdm ui: error: no file {name!r}")
    self._file(os.path.join(STATIC, name))

  def _file(self, path: str) -> None:
    """A file, whole or the one byte range asked for (players seek with ranges)."""
    if not os.path.isfile(path) or ".partial" in os.path.basename(path):
      return self._error(404, f"vdm ui: error: no file {os.path.basename(path)!r}")
    with open(path, "rb") as f:
      data = f.read()
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
    if not ranged or not (ranged.group(1) or ranged.group(2)):
      return self._send(200, data, content_type, [("Accept-Ranges", "bytes")])
    start, end = ranged.groups()
    if start:
      first, last = int(start), min(int(end) if end else len(data) - 1, len(data) - 1)
    else:  # a suffix: the last N bytes
      first, last = max(0, len(data) - int(end)), len(data) - 1
    if first > last:
      return self._send(416, b"", content_type, [("Content-Range", f"bytes */{len(data)}")])
    self._send(206, data[first:last + 1], content_type,
               [("Accept-Ranges", "bytes"), ("Content-Range", f"bytes {first}-{last}/{len(data)}")])


def make_server(runner: Runner, host: str = "127.0.0.1", port: int = 0):
  """An HTTP server for the runner (not yet serving: call serve_forever, e.g. on a thread);
  port 0 takes any free port (server.server_address has it)."""
  server = http.server.ThreadingHTTPServer((host, port), Handler)
  server.daemon_threads = True
  server.runner, server.options = runner, options(runner.checkpoints)
  return server


def serve(*, checkpoints: list[str], host: str, port: int, out: str, queue_size: int) -> int:
  """`vdm ui`: serves the page until interrupted (Ctrl-C)."""
  from vdm.catalog import describe_model_dir, find_model_dirs
  from vdm.cli_common import check_output_path
  if not isinstance(port, int) or not 0 <= port <= 65535:
    raise ValueError(f"--port {port!r} must be an integer in [0, 65535] (0: any free port)")
  check_output_path(out, "--out", folder=True)
  models = [p for p in find_model_dirs(checkpoints or None)
            if describe_model_dir(p).get("task") == "t2v"]
  if not models:
    raise ValueError(f"--checkpoint: no text-to-video model directory in "
                     f"{checkpoints or 'checkpoints/ or workdirs/*/model'}")
  runner = Runner(out, models, queue_size=queue_size)
  server = make_server(runner, host, port)
  bound_host, bound_port = server.server_address[:2]
  print(f"vdm ui: serving http://{bound_host}:{bound_port}/ with {len(models)} model(s); "
        f"outputs in {out}", flush=True)
  if host not in ("127.0.0.1", "localhost", "::1"):
    print(f"vdm ui: warning: --host {host} lets other machines reach this page", file=sys.stderr)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    thread.join()
  except KeyboardInterrupt:
    pass
  finally:
    server.shutdown()
    server.server_close()
  return 0

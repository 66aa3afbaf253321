"""`vdm ui`'s server and queue, through its HTTP API, with two untrained tiny models: the page's
clips are `vdm sample`'s bytes, bad input gets the command's own message, and concurrent
requests, a cancel and a server killed mid-request lose no finished output.
(The page itself in a browser: tests/test_ui_browser.py.)"""
import glob
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.tiny_models import random_model_dir
from vdm import cli
from vdm.ui.jobs import FINISHED, Runner
from vdm.ui.server import make_server

PROMPT = "a red circle moving right on a blue background"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  os.environ["VDM_NO_PROGRESS"] = "1"
  root = tmp_path_factory.mktemp("models")
  return [random_model_dir(str(root / name), seed) for name, seed in (("a", 1), ("b", 2))]


def start(runner):
  """Serves the runner on a free port on a thread; returns (base url, server)."""
  server = make_server(runner, "127.0.0.1", 0)
  threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05),
                   daemon=True).start()
  return f"http://127.0.0.1:{server.server_address[1]}", server


@pytest.fixture
def page(models, tmp_path):
  runner = Runner(str(tmp_path / "out"), models, queue_size=2)
  url, server = start(runner)
  yield url, runner
  server.shutdown()
  server.server_close()
  for job in runner.list():  # leave no request running into the next test
    runner.cancel(job["id"])
  runner.close()


def call(url, path, body=None):
  """(status, decoded JSON or bytes) of GET (body None) or POST url+path."""
  data = None if body is None else json.dumps(body).encode()
  request = urllib.request.Request(url + path, data=data, method="GET" if body is None else "POST")
  try:
    with urllib.request.urlopen(request, timeout=60) as response:
      status, raw, kind = response.status, response.read(), response.headers["Content-Type"]
  except urllib.error.HTTPError as e:
    status, raw, kind = e.code, e.read(), e.headers["Content-Type"]
  return status, json.loads(raw) if kind == "application/json" else raw


def wait(url, job_id, until=FINISHED, timeout=600):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    job = call(url, f"/api/jobs/{job_id}")[1]
    if until(job) if callable(until) else job["status"] in until:
      return job
    time.sleep(0.02)
  raise AssertionError(f"request {job_id} still {job['status']} after {timeout} s")


def compare(models, modes=(None, None), **fields):
  panes = [dict(checkpoint=m, **({"mode": mode} if mode else {})) for m, mode in zip(models, modes)]
  return dict(kind="compare", fields=dict(prompt=PROMPT, **fields), panes=panes)


def sha(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def run_command(command: str, out: str) -> None:
  """Runs a command the page shows, with its --out replaced."""
  argv = shlex.split(command)[1:]
  argv[argv.index("--out") + 1] = out
  assert cli.main(argv) == 0


def cli_bytes(command: str, out: str) -> bytes:
  """The bytes of the clip a command the page shows writes (to `out` instead)."""
  run_command(command, out)
  with open(out, "rb") as f:
    return f.read()


def test_page_options_and_files_are_served_and_nothing_else(page, models):
  url, runner = page
  status, html = call(url, "/")
  assert status == 200 and b'id="run-compare"' in html and b'id="sweep-axis"' in html
  assert call(url, "/static/app.js")[0] == 200
  options = call(url, "/api/options")[1]
  assert [m["path"] for m in options["models"]] == models
  assert options["models"][0]["sample"]["steps"] == 4  # configs/spine.py:tiny's default
  assert {"parallel", "autoregressive"} <= {m["name"] for m in options["modes"]}
  assert options["sweep_axes"] == ["seed", "guidance", "steps", "mode", "chunk"]
  with open(os.path.join(os.path.dirname(runner.out), "secret.txt"), "w") as f:
    f.write("not the page's")
  for path in ("/static/../jobs.py", "/files/../secret.txt", "/files/../../etc/passwd",
               "/files/x/job.json", "/api/x"):
    assert call(url, path)[0] == 404, path


def test_page_clips_are_the_bytes_of_the_command_it_shows(page, models, tmp_path):
  url, _ = page
  status, job = call(url, "/api/jobs", compare(models, (None, "autoregressive"), seed="4",
                                                  steps="2", guidance="3"))
  assert status == 201, job
  job = wait(url, job["id"])
  assert job["status"] == "done" and [c["label"] for c in job["clips"]] == ["A", "B"]
  for i, clip in enumerate(job["clips"]):
    served = call(url, f"/files/{job['id']}/{clip['file']}")[1]
    assert served == cli_bytes(job["commands"][i], str(tmp_path / f"cli_{i}.mp4"))
    sidecar = call(url, f"/files/{job['id']}/{clip['sidecar']}")[1]
    assert sidecar["request"] == clip["record"]["request"]
    assert sidecar["request"]["seed"] == 4 and sidecar["checkpoint"] == os.path.abspath(models[i])
  assert job["clips"][1]["record"]["request"]["mode"] == "autoregressive"
  # A sweep from the page: its clips and its grid are the command's too.
  status, job = call(url, "/api/jobs", dict(kind="sweep", sweep="guidance=1,3",
                                             fields=dict(prompt=PROMPT, seed="4", steps="2"),
                                             panes=[dict(checkpoint=models[0])]))
  assert status == 201, job
  job = wait(url, job["id"])
  assert job["status"] == "done" and [c["value"] for c in job["clips"]] == [1.0, 3.0]
  cli_out = str(tmp_path / "cli_sweep.mp4")
  run_command(job["commands"][0], cli_out)
  for clip, value in zip(job["clips"], ("1", "3")):
    with open(str(tmp_path / f"cli_sweep_guidance-{value}.mp4"), "rb") as f:
      assert call(url, f"/files/{job['id']}/{clip['file']}")[1] == f.read()
  with open(str(tmp_path / "cli_sweep_grid.png"), "rb") as f:
    assert call(url, f"/files/{job['id']}/{job['grid']['png']}")[1] == f.read()


def _cli_error(argv, capsys) -> str:
  try:
    code = cli.main(argv)
  except SystemExit as e:  # argparse
    code = e.code
  assert code == 2
  return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("fields, sweep", [
    (dict(steps="many"), None), (dict(post="upscale("), None), (dict(seconds="x"), None),
    (dict(sampler="fastest"), None), (dict(), "colour=1,2"), (dict(guidance="2"), "guidance=1,3"),
])
def test_bad_input_is_refused_with_the_commands_own_message(page, models, capsys, fields,
                                                            sweep):
  url, runner = page
  request = (dict(kind="sweep", sweep=sweep, fields=dict(prompt=PROMPT, **fields),
                  panes=[dict(checkpoint=models[0])]) if sweep else
             compare(models[:1], **fields))
  status, body = call(url, "/api/jobs", request)
  assert status == 400
  argv = ["sample", "--prompt", PROMPT] + [a for k, v in fields.items()
                                           for a in ("--" + k, v)]
  argv += ["--checkpoint", models[0], "--out", "x.mp4"] + (["--sweep", sweep] if sweep else [])
  assert body["error"] == _cli_error(argv, capsys)
  assert os.listdir(runner.out) == []  # a refused request leaves no folder


@pytest.mark.parametrize("fields, right_mode, failing", [
    (dict(steps="0"), "parallel", 0), (dict(aspect="4:3"), "parallel", 0),
    (dict(), "image_to_video", 1)])
def test_input_the_model_refuses_fails_the_request_with_the_commands_message(
    page, models, capsys, fields, right_mode, failing):
  url, runner = page
  request = compare(models, (None, right_mode), **dict(dict(steps="2"), **fields))
  status, job = call(url, "/api/jobs", request)
  assert status == 201
  job = wait(url, job["id"])
  assert job["status"] == "failed" and job["clips"] == []
  assert job["error"] == _cli_error(shlex.split(job["commands"][failing])[1:], capsys)
  # Both panes are checked before either samples: not even the left clip was written.
  assert sorted(os.listdir(os.path.join(runner.out, job["id"]))) == ["job.json"]


def test_two_concurrent_requests_both_finish(page, models):
  url, runner = page
  answers = {}

  def post(seed):
    answers[seed] = call(url, "/api/jobs", compare(models[:1], seed=str(seed), steps="2"))

  threads = [threading.Thread(target=post, args=(seed,)) for seed in (5, 6)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert all(status == 201 for status, _ in answers.values())
  jobs = {seed: wait(url, job["id"]) for seed, (_, job) in answers.items()}
  assert len({job["id"] for job in jobs.values()}) == 2
  clips = {}
  for seed, job in jobs.items():
    assert job["status"] == "done", job["error"]
    (clip,) = job["clips"]
    assert clip["record"]["request"]["seed"] == seed
    clips[seed] = call(url, f"/files/{job['id']}/{clip['file']}")[1]
    with open(os.path.join(runner.out, job["id"], "job.json")) as f:  # on record on disk
      assert json.load(f)["clips"][0]["file"] == clip["file"]
  assert sha(clips[5]) != sha(clips[6])


def test_cancel_keeps_finished_clips_and_the_queue_is_bounded(page, models):
  url, runner = page
  # Left pane: a quick parallel clip; right pane: a long autoregressive one, cancelled mid-way.
  status, long_job = call(url, "/api/jobs", compare(models, (None, "autoregressive"),
                                                    steps="300"))
  assert status == 201
  wait(url, long_job["id"], until=lambda j: j["status"] != "queued")
  waiting = [call(url, "/api/jobs", compare(models[:1], steps="2"))[1] for _ in range(2)]
  status, full = call(url, "/api/jobs", compare(models[:1], steps="2"))
  assert status == 429 and "--queue" in full["error"]
  for job in waiting:  # a waiting request is cancelled at once and never runs
    assert call(url, f"/api/jobs/{job['id']}/cancel", {})[1]["status"] == "cancelled"
  wait(url, long_job["id"], until=lambda j: (j["progress"] or {}).get("clip") == 2
       or j["status"] in FINISHED)
  assert call(url, f"/api/jobs/{long_job['id']}/cancel", {})[0] == 200
  job = wait(url, long_job["id"])
  assert job["status"] == "cancelled", "the right pane finished before the cancel arrived"
  assert [c["file"] for c in job["clips"]] == ["a.mp4"]  # the finished clip is kept
  folder = os.path.join(runner.out, job["id"])
  assert sorted(os.listdir(folder)) == ["a.json", "a.mp4", "job.json"]  # no partial b.mp4
  for job in waiting:
    assert sorted(os.listdir(os.path.join(runner.out, job["id"]))) == ["job.json"]
  # The worker goes on with the next request.
  status, after = call(url, "/api/jobs", compare(models[:1], steps="2"))
  assert wait(url, after["id"])["status"] == "done"


def test_request_folders_are_never_reused(models, tmp_path, monkeypatch):
  out = tmp_path / "out"
  stamp = time.strftime("%Y%m%d-%H%M%S")
  monkeypatch.setattr(time, "strftime", lambda fmt: stamp)
  (out / f"{stamp}-001").mkdir(parents=True)  # someone else's folder of that name
  (out / f"{stamp}-001" / "mine.txt").write_text("keep")
  runner = Runner(str(out), models)
  try:
    job = runner.submit(compare(models[:1], steps="2"))
    assert job["id"] == f"{stamp}-002"
    runner.cancel(job["id"])
  finally:
    runner.close()
  assert (out / f"{stamp}-001" / "mine.txt").read_text() == "keep"


def test_a_clip_finished_but_not_yet_recorded_is_listed_after_a_restart(models, tmp_path):
  """The window between a clip getting its name and job.json listing it: a video whose sidecar
  exists is complete, and the next server lists it."""
  import numpy as np
  from vdm.provenance import write_json, write_sidecar
  from vdm.video_io import write_video
  out = tmp_path / "out"
  folder = out / "20260101-000000-001"
  folder.mkdir(parents=True)
  request = compare(models, steps="2")
  write_json(str(folder / "job.json"), dict(
      id=folder.name, kind="compare", request=request, status="running", created=0.0,
      started=0.0, finished=None, progress=dict(clip=2, clips=2, step=1, steps=2, chunk=1,
                                                chunks=1),
      clips=[], grid=None, error=None, commands=[]))
  write_video(str(folder / "a.mp4"), np.zeros((5, 16, 16, 3), np.uint8), 8)
  write_sidecar(str(folder / "a.mp4"), dict(request=dict(seed=0)))
  write_video(str(folder / "b.mp4.partial.mp4"), np.zeros((3, 16, 16, 3), np.uint8), 8)
  runner = Runner(str(out), models)
  try:
    job = runner.get(folder.name)
  finally:
    runner.close()
  assert job["status"] == "interrupted"
  assert [(c["label"], c["file"], c["sidecar"]) for c in job["clips"]] == [("A", "a.mp4",
                                                                           "a.json")]
  assert sorted(os.listdir(folder)) == ["a.json", "a.mp4", "job.json"]
  with open(folder / "job.json") as f:
    assert json.load(f)["clips"][0]["file"] == "a.mp4"  # and the record says so


def _serve_in_process(models, out):
  """`vdm ui` as a child process; returns (process, base url)."""
  command = [sys.executable, "-m", "vdm.cli", "ui", "--port", "0", "--out", out]
  for model in models:
    command += ["--checkpoint", model]
  process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, VDM_NO_PROGRESS="1"))
  line = process.stdout.readline()
  assert "serving http://127.0.0.1:" in line, line  # this machine only, by default
  return process, line.split("serving ")[1].split("/ ")[0]


def test_a_server_killed_mid_request_loses_no_finished_output(models, tmp_path):
  out = str(tmp_path / "out")
  process, url = _serve_in_process(models, out)
  try:
    done = wait(url, call(url, "/api/jobs", compare(models, steps="300"))[1]["id"])
    assert done["status"] == "done"
    files = {c["file"]: sha(call(url, f"/files/{done['id']}/{c['file']}")[1])
             for c in done["clips"]}
    running = call(url, "/api/jobs", compare(models, (None, "autoregressive"), steps="300"))[1]
    wait(url, running["id"], until=lambda j: (j["progress"] or {}).get("clip") == 2)
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()
  process, url = _serve_in_process(models, out)
  try:
    jobs = {j["id"]: j for j in call(url, "/api/jobs")[1]}
    assert jobs[done["id"]]["status"] == "done"
    for name, digest in files.items():
      assert sha(call(url, f"/files/{done['id']}/{name}")[1]) == digest
    stopped = jobs[running["id"]]
    assert stopped["status"] == "interrupted" and "finished clips are kept" in stopped["error"]
    assert [c["file"] for c in stopped["clips"]] == ["a.mp4"]
    assert call(url, f"/files/{running['id']}/a.mp4")[0] == 200
    assert sorted(os.listdir(os.path.join(out, running["id"]))) == ["a.json", "a.mp4",
                                                                    "job.json"]
    assert not glob.glob(os.path.join(out, "*", "*.partial*"))
  finally:
    process.terminate()
    process.wait()

"""Every notebook in colabs/ runs top to bottom on a CPU (display calls are no-ops here)."""
import glob
import json
import os

import mediapy
import pytest

NOTEBOOKS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "colabs", "*.ipynb")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_executes(path, monkeypatch):
  shown = []
  monkeypatch.setattr(mediapy, "show_video", lambda frames, **kw: shown.append(frames))
  monkeypatch.setenv("VDM_NO_PROGRESS", "1")
  monkeypatch.chdir(os.path.dirname(path))  # notebooks use paths relative to colabs/
  cells = json.load(open(path))["cells"]
  namespace = {}
  for cell in cells:
    if cell["cell_type"] == "code":
      exec(compile("".join(cell["source"]), f"{path}:cell", "exec"), namespace)
  assert shown and all(frames.ndim == 4 and frames.shape[-1] == 3 for frames in shown)

"""`vdm ui`: a local web page over `vdm sample` (docs/ui.md).

  jobs.py     the queue: a request becomes `vdm sample` command lines run by one worker, with
              progress, cancel and a record on disk that outlives the server
  server.py   the HTTP server (standard library) and its JSON API
  static/     the page (HTML, CSS and JavaScript, no build step)
"""

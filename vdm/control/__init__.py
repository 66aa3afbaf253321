"""Control signals beyond the prompt: object trajectories, camera paths and prompt timelines.

  trajectory  where each object's centre is in every frame (JSON: points or keypoints)
  camera      the view's scale and offset per frame ("pan(2,0)+zoom(1.3)", or JSON)
  timeline    which prompt holds when, and what happens at each switch ("0s: ...; 2s: ...")
  features    the DiT's conditioning inputs built from a trajectory and a camera path

Pure numpy: parsing, validation (errors name the field and the allowed range) and feature maps.
Nothing here knows the models or the samplers (docs/control.md).
"""

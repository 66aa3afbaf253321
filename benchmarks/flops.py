"""Analytic FLOP counts (2 per multiply-add) of the DiT (factorized or full 3D attention), to turn
step time into FLOP/s."""
from __future__ import annotations


def dit_forward_flops(*, batch: int, frames: int, tokens_per_frame: int, text_tokens: int,
                      width: int, depth: int, mlp_ratio: float, patch_dim: int,
                      attention: str = "factorized") -> float:
  """Forward FLOPs of `vdm.dit.model.DiT` (matmuls only; norms and softmax are negligible)."""
  d, n = width, batch * frames * tokens_per_frame
  mlp = int(width * mlp_ratio)
  per_token_linear = (
      2 * 4 * d * d * (2 if attention == "factorized" else 1)  # self-attention q, kv, out
      + 2 * 2 * d * d                                           # cross-attention q, out
      + 2 * 2 * d * mlp)                                        # MLP
  cross_kv = 2 * 2 * d * d * batch * text_tokens
  modulation = 2 * d * (9 if attention == "factorized" else 6) * d * batch * frames
  if attention == "factorized":
    scores = 2 * 2 * d * (batch * frames * tokens_per_frame ** 2
                          + batch * tokens_per_frame * frames ** 2)
  else:
    scores = 2 * 2 * d * batch * (frames * tokens_per_frame) ** 2
  cross_scores = 2 * 2 * d * n * text_tokens
  blocks = depth * (n * per_token_linear + cross_kv + modulation + scores + cross_scores)
  embed = 2 * n * patch_dim * d * 2  # patch embedding in, final projection out
  return float(blocks + embed)


def train_step_flops(forward: float) -> float:
  """Forward + backward: the backward pass costs two forwards (grads w.r.t. inputs and weights)."""
  return 3.0 * forward

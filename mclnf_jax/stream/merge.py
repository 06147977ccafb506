"""How a capped buffer (`max_experts`) folds its oldest expert into the shared expert.

'average': parameter averaging, the shared expert becomes the mean of every expert
  merged into it (each started from the same init, so the mean is a field of the same
  form). Free, but the mean of experts fitted to different cells fits none of them well.
'distill': the shared expert is refit on what the two experts being merged predict:
  starting from their weighted average (as 'average'), with the learner's own test-time
  fit (the one that made every expert; `merge_steps` steps), on `DISTILL_ROWS` inputs
  drawn uniformly over the merged cells from inputs kept of each cell's context
  (`ANCHORS` per cell: inputs only, no targets), each labelled by the expert that held
  its cell: the oldest expert for its cells, the shared expert for the cells it held
  already. (Starting from the shared expert itself, or fitting 8x longer, measured
  worse on the video stream; see BUILD_NOTES.md.)
Draws are seeded by the cell and the merge count, so a loaded stream merges as the
saved one would have.
"""
import jax
import jax.numpy as jnp
import numpy as np

MERGES = ('average', 'distill')
ANCHORS = 256         # context inputs kept per cell for distillation
DISTILL_ROWS = 2048   # inputs of one distillation fit


class Anchors:
  """ANCHORS context inputs of every cell, [num_cells, ANCHORS, in_dim]."""

  def __init__(self, num_cells: int, in_dim: int):
    self.x = np.zeros((num_cells, ANCHORS, in_dim), np.float32)

  def keep(self, cell: int, x: np.ndarray) -> None:
    rng = np.random.default_rng([cell, len(x)])
    self.x[cell] = x[rng.choice(len(x), ANCHORS, replace=len(x) < ANCHORS)]

  def draw(self, cells: np.ndarray, merge: int) -> tuple[np.ndarray, np.ndarray]:
    """(x [DISTILL_ROWS, in_dim], cell of each row): rows of uniformly drawn cells."""
    rng = np.random.default_rng([1, merge])
    picked = rng.choice(cells, DISTILL_ROWS)
    return self.x[picked, rng.integers(ANCHORS, size=DISTILL_ROWS)], picked


def teacher(apply):
  """labels(buffer, oldest, shared, x, is_oldest) -> each row's prediction by the expert
  that held its cell (`apply`: one expert's prediction, the modality's predictor)."""
  def labels(buffer, oldest, shared, x, is_oldest):
    expert = lambda slot: jax.tree.map(lambda b: b[slot], buffer)
    return jnp.where(is_oldest[:, None], apply(expert(oldest), x), apply(expert(shared), x))
  return labels

"""The paper's image, video and audio settings, each with its CPU variant.

Section 5 and appendix E: single networks of 5 layers x 256 against 4 experts of 5 x 128
(SIREN), test-time optimisation to 4096 steps per task, meta-batch and inner steps as in
the GradNCP/LearnedInit line of work the paper builds on. The CPU variant keeps the
ratios (4 tasks, about equal parameters) at a size that meta-trains in minutes on two
cores: depth 4, single networks 64 wide against experts 32 wide, 128 test-time steps.
"""
import ml_collections

from mclnf_jax import learners
from mclnf_jax.configs import base
from mclnf_jax.errors import UserError

SINGLE_WIDTH, EXPERT_WIDTH = 256, 128
VARIANTS = ('', 'cpu')


def is_cpu(variant: str) -> bool:
  """The config-file argument (`--config=configs/x.py:cpu`): '' paper scale, 'cpu'."""
  if variant not in VARIANTS:
    raise UserError(f'unknown config variant {variant!r}: use configs/<name>.py (paper '
                    'scale) or configs/<name>.py:cpu')
  return variant == 'cpu'


def grid_config(modality: str) -> ml_collections.ConfigDict:
  """Paper scale for a grid modality (image, video, audio), every method of Table 1."""
  c = base.base_config()
  c.modality = modality
  c.learners = ','.join(learners.paper_methods(modality))
  base.set_widths(c, SINGLE_WIDTH, EXPERT_WIDTH)
  c.meta.update(steps=100_000, batch_size=8, lr=1e-5, inner_steps=3, val_every=1000,
                log_every=100, save_every=2000)
  c.eval.update(max_steps=4096, batch_size=4, num_shown=4)
  c.data.update(num_val=32, num_test=100)
  return c


def cpu_sized(c: ml_collections.ConfigDict) -> None:
  """The shared scale-down of a paper config (same ratios, CPU minutes).

  Test-time optimisers (BUILD_NOTES, "Test-time optimisers"): Adam 1e-3 for every
  method except those that adapt with the SGD rule they define (MAML+CL, OML, MER).
  """
  c.field.depth = 4
  base.set_widths(c, 64, 32)
  for m in learners.METHODS:
    if not m.sgd_rule:
      c.methods[m.name].update(tto_opt='adam', tto_lr=1e-3)
  # ER's and MER's buffers keep their declared fraction of the signal (10%), as at paper
  # scale: the CPU variant sets no buffer size of its own.
  c.data.update(num_val=8, num_test=8)


def image(variant: str = '', resolution: int = 180) -> ml_collections.ConfigDict:
  """Images in 4 strips (section 5.2); CPU: 32x32."""
  c = grid_config('image')
  c.data.resolution = resolution
  c.tasks.update(grid=(1, 4), split='grid')
  if is_cpu(variant):
    cpu_sized(c)
    c.data.resolution = 32
    c.meta.update(steps=300, batch_size=4, lr=5e-4, inner_steps=3,
                  val_every=100, log_every=100, save_every=300)
    c.eval.update(max_steps=128, batch_size=8, num_shown=2)
  return c


def video(variant: str = '', resolution: int = 112) -> ml_collections.ConfigDict:
  """4 frames per clip, one frame per task, (t, row, col) -> RGB (section 5.3); CPU: 32x32."""
  c = grid_config('video')
  c.data.update(resolution=resolution, frames=4, frame_stride=0)
  c.tasks.update(grid=(4, 1, 1), split='grid')
  c.meta.batch_size = 4
  if is_cpu(variant):
    cpu_sized(c)
    c.data.update(resolution=32, frame_stride=1)
    c.meta.update(steps=300, batch_size=2, lr=5e-4, inner_steps=3,
                  val_every=100, log_every=50, save_every=300)
    c.eval.update(max_steps=128, batch_size=4, num_shown=1)
  return c


def audio(variant: str = '') -> ml_collections.ConfigDict:
  """3-second clips at 16 kHz, 4 consecutive segments as tasks (section 5.4); CPU: 1 s.

  GradNCP's audio parametrisation (the line of work the paper follows): coordinates
  scaled by 50 and w0 = 30 in every layer (not a first-layer w0 of 3000, whose
  meta-gradient is ~1000x larger), waveforms fitted as data in [0, 1] (tasks/audio.py),
  inner SGD at 1e-2 for 3 steps, outer Adam at 1e-4 with the gradient clipped at 1.
  """
  c = grid_config('audio')
  c.data.seconds = 3.0
  c.tasks.update(grid=(4,), split='grid')
  c.field.update(w0=30.0, w0_first=0.0, input_scale=50.0)
  c.meta.update(lr=1e-4, clip=1.0, inner_steps=3)
  # Three plain SGD steps at one rate cannot fit speech from any shared init (validation
  # stays at the silent prediction); learned per-tensor rates can (BUILD_NOTES, audio).
  for m in learners.METHODS:
    if m.meta_learned:
      c.methods[m.name].meta_sgd = 'tensor'
  if is_cpu(variant):
    cpu_sized(c)
    c.data.update(seconds=1.0, num_val=4, num_test=4)
    c.meta.update(steps=500, batch_size=2, lr=1e-3, rates_lr=3e-2, inner_steps=3,
                  val_every=100, log_every=100, save_every=500)
    c.eval.update(max_steps=128, batch_size=4, num_shown=1)
  return c

"""The paper's full-scale settings, shared by configs/*.py (one place, no drifting copies).

Section 5 and appendix E: single networks of 5 layers x 256 against 4 experts of 5 x 128
(SIREN), test-time optimisation to 4096 steps per task, meta-batch and inner steps as
in the GradNCP/LearnedInit line of work the paper builds on.
"""
import ml_collections

from mclnf_jax import config_base

SINGLE_WIDTH, EXPERT_WIDTH = 256, 128


def paper_methods(c: ml_collections.ConfigDict) -> None:
  """Widths of the paper (parameter-matched), every method of Table 1 listed."""
  c.learners = ','.join(config_base.ALL_LEARNERS)
  for name in c.methods:
    c.methods[name].width = EXPERT_WIDTH if name.startswith('mcl') else SINGLE_WIDTH


def paper_grid_config(modality: str) -> ml_collections.ConfigDict:
  c = config_base.base_config()
  c.modality = modality
  paper_methods(c)
  c.meta.update(steps=100_000, batch_size=8, lr=1e-5, inner_steps=3, val_every=1000,
                log_every=100, save_every=2000)
  c.eval.update(max_steps=4096, batch_size=4, num_grid=4)
  c.data.update(num_val=32, num_test=100)
  return c


def cpu_sized(c: ml_collections.ConfigDict, *, depth: int = 4, single_width: int = 64,
              expert_width: int = 32) -> None:
  """The quickstarts' shared scale-down of a paper config (same ratios, CPU minutes).

  Test-time optimisers (BUILD_NOTES, "Test-time optimisers"): Adam for random-init and
  modular learners, the meta-trained SGD rule for MAML+CL, OML and MER.
  """
  c.field.depth = depth
  for name in c.methods:
    c.methods[name].width = expert_width if name.startswith('mcl') else single_width
  for name in ('ol', 'cl', 'er', 'ewc', 'mol', 'mcl', 'mcl_fim', 'meil_nerf'):
    c.methods[name].update(tto_opt='adam', tto_lr=1e-3)
  c.methods.mer.update(buffer_size=1024, batches_per_step=2)
  c.methods.er.update(buffer_size=1024)

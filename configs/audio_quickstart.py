"""Audio MCL-NF on embedded speech (espeak-ng voices bundled in a PyPI wheel), 2-core CPU.

python -m mclnf_jax.main --config=configs/audio_quickstart.py --workdir=workdir/audio_quickstart

1-second clips at 16 kHz, 4 consecutive segments of 0.25 s as tasks; t -> amplitude.
"""
from mclnf_jax import config_paper


def get_config():
  c = config_paper.paper_grid_config('audio')
  c.name = 'audio_quickstart'
  c.data.update(name='embedded', root='', seconds=1.0, num_val=4, num_test=4)
  c.tasks.update(blocks=(4,), split='grid')
  c.field.update(depth=4, w0=30.0, w0_first=3000.0)
  config_paper.cpu_sized(c)
  # Meta-validation PSNR is flat after ~25 outer steps at this scale (BUILD_NOTES, audio),
  # so 100 steps keep the whole quickstart under 10 minutes.
  c.meta.update(steps=100, batch_size=2, lr=5e-4, inner_steps=3,
                val_every=25, log_every=25, save_every=100)
  c.eval.update(max_steps=128, batch_size=4, num_grid=1)
  return c

"""The embedded city at a size where its streets show in held-out views (CPU, ~7 min).

python -m mclnf_jax.main --config=configs/nerf_city_cpu.py --workdir=workdir/nerf_city_cpu

The NeRF quickstart (`configs/nerf_quickstart.py`) renders 32x32 views with 16 samples per
ray and fits 64 test-time steps: every method's held-out view is a blur. This config keeps
its meta-training and changes what decides what a person sees: 64x64 views, experts of
4 x 64 (single networks 4 x 128), 32 samples per ray, positional encoding of 8
frequencies, and 1024 test-time steps of 512 fresh rays per cell on the 3 meta-test
blocks. Ours (mod) beside each block's mean colour (the trivial row), at Adam 5e-3 for 1024
steps. The baselines' comparison is the quickstart's: learners that are not resumable
re-run every step count from scratch (2 x 1024 steps here), which this config does not
afford on a 2-core CPU.
"""
from mclnf_jax.configs import base, nerf


def get_config():
  c = nerf.nerf('cpu')
  c.name = 'nerf_city_cpu'
  c.data.update(name='city', resolution=64)
  c.learners = 'mean,modular'
  c.field.update(pos_freqs=8)
  c.render.update(num_samples=32)
  base.set_widths(c, 128, 64)
  c.scene.update(tto_rays_per_task=512)
  for name in ('modular', 'modular_fim'):      # Ours (MIM), if added, at the same rule
    c.methods[name].update(tto_opt='adam', tto_lr=5e-3)
  c.eval.update(max_steps=1024, batch_size=1)
  return c

"""NeRF MCL on your own scenes: a folder of nerfstudio / instant-ngp / Blender scenes.

python -m mclnf_jax.main --config=configs/nerf_transforms_json.py \
    --config.data.root=/path/to/scenes --config.scene.train_blocks=a,b,c \
    --config.scene.test_blocks=d --workdir=workdir/nerf_transforms_json

data.root holds one folder per scene (one block each), named in scene.train_blocks
(meta-training) and scene.test_blocks (meta-test). A scene folder holds
transforms_train.json (+ transforms_test.json: the held-out views of a meta-test scene)
or one transforms.json, of which views 0, k, 2k, ... (k = scene.heldout_every) are held
out of a meta-test scene. Views are resized to scene.image_width x image_height on load.
"""
from mclnf_jax.configs import nerf


def get_config(variant=''):
  c = nerf.nerf(variant)
  c.name = 'nerf_transforms_json'
  c.data.update(name='transforms_json', root='', num_val=1, num_test=1)
  c.scene.update(train_blocks='', test_blocks='', heldout_every=8,
                 image_width=400, image_height=400)
  return c

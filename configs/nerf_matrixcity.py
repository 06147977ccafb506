"""MatrixCity aerial blocks (section 5.5): the user's headline run, for a GPU.

python -m mclnf_jax.main --config=configs/nerf_matrixcity.py \
    --config.data.root=/path/to/MatrixCity --workdir=workdir/nerf_matrixcity

data.root holds small_city/aerial/block_N/transforms.json (+ rgb/NNNN.png) and the test
views in block_N_test/; views are resized to 480x270 on load and cached per block. Without
the data this exits with a one-line message; configs/nerf_quickstart.py runs offline.
Blocks 1-4, 7-9 meta-train and 5, 6, 10 meta-test (70/30, as the paper).
"""
from mclnf_jax.configs import nerf


def get_config(variant=''):
  c = nerf.nerf(variant)
  c.name = 'nerf_matrixcity'
  c.data.update(name='matrixcity', root='', num_val=1, num_test=3)
  c.scene.update(train_blocks='1,2,3,4,7,8,9', test_blocks='5,6,10', scale=0.01,
                 image_width=480, image_height=270)
  return c

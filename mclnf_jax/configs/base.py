"""The full key set of an experiment config; every config starts here and overrides.

Every key lives in this one function, so a config file shows the whole experiment and a
typo in `--config.x.y=...` fails instead of passing silently. Derived values (the eval
step list, parameter counts) are computed in code, never stored here.
"""
import ml_collections

from mclnf_jax import learners


def method(width: int, *, loss: str = 'mse', tto_opt: str = 'sgd', tto_lr: float = 1e-2,
           inner_opt: str = 'sgd', inner_lr: float = 1e-2) -> ml_collections.ConfigDict:
  """Per-learner settings: network width, loss, inner and test-time optimisers."""
  return ml_collections.ConfigDict(dict(
      width=width, loss=loss, tto_opt=tto_opt, tto_lr=tto_lr,
      inner_opt=inner_opt, inner_lr=inner_lr))


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = 'run'        # default workdir: workdir/<name>
  c.seed = 0
  c.modality = 'image'

  c.data = ml_collections.ConfigDict(dict(
      name='embedded',    # embedded | celeb_a | imagenette | ffhq
      root='',            # TFDS data_dir or image folder; '' = ~/.cache/mclnf_jax/tfds
      resolution=32,      # images and video: square side in pixels
      frames=4,           # video: frames per clip
      frame_stride=0,     # video: frames skipped between kept frames
      seconds=3.0,        # audio: clip length
      num_train=0,        # meta-train signals (0 = all)
      num_val=8,          # held out of meta-train for meta-validation
      num_test=8,         # meta-test signals evaluated
      seed=0))

  # T = prod(grid) tasks: the task grid's size along each signal axis (see tasks/grid.py).
  c.tasks = ml_collections.ConfigDict(dict(
      grid=(1, 4),        # images: 4 strips; video: (4, 1, 1) frames; audio: (4,); scenes: cells
      split='grid'))      # grid (contiguous blocks) | resolution (appendix D)

  c.field = ml_collections.ConfigDict(dict(
      kind='siren',       # siren | nerf
      depth=5,            # linear layers (siren) / trunk layers (nerf)
      w0=30.0, w0_first=0.0, sine='fast',         # siren (w0_first 0: same as w0)
      pos_freqs=10, dir_freqs=4, skip=True))      # nerf

  # Scenes (modality 'nerf', data.name city | matrixcity | transforms_json; see
  # data/scenes.py): the procedural city, MatrixCity blocks or transforms.json scenes.
  c.scene = ml_collections.ConfigDict(dict(
      num_blocks=10,              # city: blocks generated (70% meta-train, 30% meta-test)
      views_per_cell=8,           # city: aerial context views per ground cell
      heldout_views=4,            # held-out views per meta-test block in the query set
      rays_per_task=1024,         # context rays drawn from each cell's views
      tto_rays_per_task=0,        # ... for meta-test blocks (test-time only; 0: the same)
      train_blocks='',            # matrixcity: comma-separated block ids for meta-training;
                                  # transforms_json: scene folder names under data.root
      test_blocks='',             # matrixcity: block ids for meta-test (views in block_N_test);
                                  # transforms_json: scene folder names (see heldout_every)
      heldout_every=8,            # transforms_json: a meta-test scene without
                                  # transforms_test.json holds out views 0, k, 2k, ...
      scale=0.01,                 # matrixcity: translation scale factor
      image_width=480, image_height=270))   # matrixcity, transforms_json: resize on load

  c.render = ml_collections.ConfigDict(dict(
      num_samples=32, hierarchical_samples=0, background=(1.0, 1.0, 1.0), chunk=4096))

  # FIM loss (eq. 2-3), used by learners whose `loss` is 'fim'; normalize: weights of mean
  # one (the same mean step as the MSE at one learning rate; False: eq. 3's 1 + lam q).
  c.fim = ml_collections.ConfigDict(dict(lam=1.0, fisher='diag', damping=1e-8, normalize=True))

  c.learners = 'ol,maml_cl,modular'
  # The paper: single networks 5 x 256, ours 4 experts of 5 x 128.
  c.methods = ml_collections.ConfigDict({
      'ol': method(256, tto_opt='adam', tto_lr=1e-4),
      'maml_cl': method(256),
      'modular': method(128),
      'modular_fim': method(128, loss='fim'),
      # Baselines from a random init (inner_* unused: not meta-learned).
      'cl': method(256, tto_opt='adam', tto_lr=1e-4, inner_opt='sgd', inner_lr=1e-2),
      'er': method(256, tto_opt='adam', tto_lr=1e-4, inner_opt='sgd', inner_lr=1e-2),
      'ewc': method(256, tto_opt='adam', tto_lr=1e-4, inner_opt='sgd', inner_lr=1e-2),
      'mer': method(256, tto_opt='sgd', tto_lr=1e-2, inner_opt='sgd', inner_lr=1e-2),
      # Meta-learned single networks.
      'mol': method(256, tto_opt='sgd', tto_lr=1e-2, inner_opt='sgd', inner_lr=1e-2),
      'oml': method(256, tto_opt='sgd', tto_lr=1e-2, inner_opt='sgd', inner_lr=1e-2),
  })
  # ER / MER: a reservoir buffer of earlier tasks' samples; replay_ratio is the fraction
  # of each step's batch drawn from it. MER: beta / gamma are its within- / across-batch
  # Reptile rates, batches_per_step its s, tto_lr its SGD rate alpha. EWC: the lambda of
  # (lambda/2) sum F (theta - theta*)^2. OML: the first rln_layers dense layers form the
  # representation, updated by the outer loop only.
  c.methods.er.update(buffer_size=8192, replay_ratio=0.5)
  c.methods.mer.update(buffer_size=8192, replay_ratio=0.5, beta=0.1, gamma=1.0,
                       batches_per_step=4)
  c.methods.ewc.update(ewc_lambda=100.0)
  c.methods.oml.update(rln_layers=3)
  # MEIL-NeRF: inputs replayed from earlier tasks with the previous model's predictions.
  c.methods.meil_nerf = method(256, tto_opt='adam', tto_lr=1e-4)
  c.methods.meil_nerf.update(replay_size=1024, replay_lambda=1.0)

  c.meta = ml_collections.ConfigDict(dict(
      steps=1000, batch_size=8, lr=1e-5, lr_final_fraction=0.1, clip=1.0,
      inner_steps=3, first_order=False,
      val_every=100, log_every=50, save_every=500,
      init_from=''))      # a workdir whose learners' meta-params start this run (checkpoints.py)

  c.eval = ml_collections.ConfigDict(dict(
      max_steps=4096, batch_size=8,
      num_shown=2))       # meta-test signals drawn in the reconstruction figures
  return c


def set_widths(c: ml_collections.ConfigDict, single: int, expert: int) -> None:
  """Parameter-matched widths: `expert` for the modular methods, `single` for the rest."""
  for m in learners.METHODS:
    c.methods[m.name].width = expert if m.modular else single

"""The full key set of an experiment config; every config starts here and overrides.

Every key lives in this one function, declared once next to its default with what it
means and whether it ties a checkpoint (`keys.key(default, doc, kind, ...)`; see
mclnf_jax/configs/keys.py): the workdir identity (mclnf_jax/identity.py) and the key
reference (CONFIG.md, `python -m mclnf_jax.configs.reference`) both read these
declarations. A typo in `--config.x.y=...` fails instead of passing silently. Derived
values (the eval step list, parameter counts) are computed in code, never stored here.
"""
import ml_collections

from mclnf_jax import learners
from mclnf_jax.configs import keys
from mclnf_jax.configs.keys import RESULT, RUN, key, section

# data.root '' = the default place of data.name, the one rule for every dataset:
# embedded data are built in (and read from) EMBEDDED_ROOT; prepared TFDS datasets
# (celeb_a, imagenette, librispeech) are read from TFDS's own default data_dir
# ($TFDS_DATA_DIR, else ~/tensorflow_datasets), where `tfds build` puts them; folder
# datasets (ffhq, voxceleb2, audio_dir, matrixcity, transforms_json) need a root.
# No config file names a path of its own. (mclnf_jax.data.common.DEFAULT_EMBEDDED_ROOT
# is this value.)
DATA_ROOT = ''
EMBEDDED_ROOT = '~/.cache/mclnf_jax/tfds'
TFDS_ROOT = "TFDS's default data_dir ($TFDS_DATA_DIR, else ~/tensorflow_datasets)"


def method(width: int, *, loss: str = 'mse', tto_opt: str = 'sgd', tto_lr: float = 1e-2,
           inner_opt: str = 'sgd', inner_lr: float = 1e-2) -> ml_collections.ConfigDict:
  """Per-learner settings (declared): network width, loss, inner and test-time optimisers.

  meta_sgd (meta-learned methods): '' off; 'tensor' / 'param' learn a log inner rate per
  parameter tensor / per parameter (Meta-SGD), started at inner_lr; the learned SGD then
  adapts at test time too (tto_opt and tto_lr are unused).
  """
  return section(
      width=key(width, 'hidden width of the field (of each expert for modular methods)'),
      loss=key(loss, "inner and meta loss: 'mse' | 'fim' (the FIM loss, config.fim)"),
      tto_opt=key(tto_opt, "test-time optimiser: 'sgd' | 'adam'", RESULT),
      tto_lr=key(tto_lr, 'test-time learning rate', RESULT),
      inner_opt=key(inner_opt, "inner-loop optimiser of meta-training: 'sgd' | 'adam'"),
      inner_lr=key(inner_lr, 'inner-loop learning rate of meta-training'),
      meta_sgd=key('', "Meta-SGD: '' off | 'tensor' | 'param' learned log inner rates "
                   '(started at inner_lr; then also used at test time)'))


def declared_config() -> ml_collections.ConfigDict:
  """Every key as a `keys.Key` declaration (`base_config` is its defaults)."""
  c = ml_collections.ConfigDict()
  c.name = key('run', 'default workdir: workdir/<name>', RUN)
  c.seed = key(0, 'seed of initialisations, meta-batches and task sampling')
  c.modality = key('image', 'image | video | audio | nerf (or a registered modality)')

  c.data = section(
      name=key('embedded', 'dataset or format (embedded | celeb_a | imagenette | ffhq | ...; '
               'see mclnf_jax/data/signals.py)'),
      root=key(DATA_ROOT, f"data folder; '' = the default of data.name: embedded data in "
               f'{EMBEDDED_ROOT}, TFDS datasets in {TFDS_ROOT}, folder datasets need one'),
      resolution=key(32, 'square side in pixels', used_by=('image', 'video')),
      frames=key(4, 'frames per clip', used_by=('video',)),
      frame_stride=key(0, 'frames skipped between kept frames', used_by=('video',)),
      seconds=key(3.0, 'clip length in seconds', used_by=('audio',)),
      num_train=key(0, 'meta-train signals (0 = all)'),
      num_val=key(8, 'signals held out of meta-train for meta-validation'),
      num_test=key(8, 'meta-test signals evaluated', RESULT),
      seed=key(0, 'seed of the signal subset and crops drawn'))

  # T = prod(grid) tasks: the task grid's size along each signal axis (see tasks/grid.py).
  c.tasks = section(
      grid=key((1, 4), 'tasks along each signal axis (images: 4 strips; video: (4, 1, 1) '
               'frames; audio: (4,); scenes: ground cells)'),
      split=key('grid', 'grid (contiguous blocks) | resolution (interleaved, appendix D)'))

  nerf, siren = ('field.kind', ('nerf',)), ('field.kind', ('siren',))
  c.field = section(
      kind=key('siren', 'siren | nerf'),
      depth=key(5, 'linear layers (siren) / trunk layers (nerf)'),
      w0=key(30.0, 'SIREN frequency of the hidden layers', only=siren),
      w0_first=key(0.0, 'SIREN frequency of the first layer (0: same as w0)', only=siren),
      input_scale=key(1.0, 'SIREN coordinates are multiplied by this before the first '
                      'layer (GradNCP audio: 50)', only=siren),
      sine=key('fast', 'sine implementation (mclnf_jax/fields/sine.py)', only=siren),
      pos_freqs=key(10, 'NeRF positional-encoding frequencies of positions', only=nerf),
      dir_freqs=key(4, 'NeRF positional-encoding frequencies of directions', only=nerf),
      skip=key(True, 'NeRF skip connection of the input into the trunk', only=nerf))

  # Scenes (modality 'nerf', data.name city | matrixcity | transforms_json; see
  # data/scenes.py): the procedural city, MatrixCity blocks or transforms.json scenes.
  c.scene = section(
      used_by=('nerf',),
      num_blocks=key(10, 'city: blocks generated (70% meta-train, 30% meta-test)'),
      views_per_cell=key(8, 'city: aerial context views per ground cell'),
      altitude=key(1.5, 'city: drone altitude over the ground (a block is 2 units wide)'),
      tilt_deg=key(30.0, 'city: camera tilt from the vertical, degrees (held-out views +-5)'),
      fov_deg=key(60.0, 'city: horizontal field of view, degrees'),
      heldout_views=key(4, 'held-out views per meta-test block in the query set'),
      rays_per_task=key(1024, 'rays of a cell fitted per inner step in meta-training, a '
                        'fresh batch each step'),
      tto_rays_per_task=key(0, 'rays of a cell fitted per test-time step (0: '
                            'rays_per_task)', RESULT),
      pool_rays=key(65536, 'rays kept per cell (a fixed shuffled draw of its views\' rays) '
                    'from which every step draws its batch; 0: every ray of the cell '
                    '(only where all cells of all blocks hold as many rays: the city)'),
      query_rays_per_task=key(0, 'rays per cell of the meta-loss query set, apart from the '
                              "inner loop's (0: rays_per_task)"),
      stratified=key(True, 'jittered samples along rays in inner and test-time steps '
                     '(metrics and figures render midpoints)'),
      cell_overlap=key(0.0, "Mega-NeRF's overlapping cells: a cell's pool adds other views' "
                       'rays crossing the cell grown by this fraction of its size on each '
                       'side (0: pools by view; tasks/scene.py)'),
      blend_overlap=key(0.0, "Mega-NeRF's blending: render-time weights of the experts whose "
                        'cells grown by this fraction (< 0.5) hold a point, by inverse '
                        'distance to cell centres (0: hard routing; tasks/scene.py)', RESULT),
      train_blocks=key('', 'matrixcity: comma-separated block ids for meta-training; '
                       'transforms_json: scene folder names under data.root'),
      test_blocks=key('', 'matrixcity: block ids for meta-test (views in block_N_test); '
                      'transforms_json: scene folder names (see heldout_every)'),
      heldout_every=key(8, 'transforms_json: a meta-test scene without '
                        'transforms_test.json holds out views 0, k, 2k, ...'),
      scale=key(0.01, 'matrixcity: translation scale factor'),
      image_width=key(480, 'matrixcity, transforms_json: view width after resizing on load'),
      image_height=key(270, 'matrixcity, transforms_json: view height after resizing on load'))

  c.render = section(
      used_by=('nerf',),
      num_samples=key(32, 'coarse samples per ray'),
      hierarchical_samples=key(0, 'fine (importance) samples per ray; 0: none'),
      background=key((1.0, 1.0, 1.0), 'RGB composited behind the scene'),
      chunk=key(4096, 'rays rendered per chunk (memory only)', RUN))

  # FIM loss (eq. 2-3), used by learners whose `loss` is 'fim'.
  fim = ('methods.{learner}.loss', ('fim',))
  c.fim = section(
      lam=key(1.0, 'lambda of the FIM weights w_i = 1 + lam q_i (eq. 3)', only=fim),
      fisher=key('diag', 'Fisher estimator: exact | diag | kfac', only=fim),
      damping=key(1e-8, 'damping added to the Fisher', only=fim),
      normalize=key(True, 'weights normalised to mean 1 (see losses.fim_weighted_mse)',
                    only=fim),
      max_ratio=key(2.0, 'scores q_i clipped at max_ratio x mean(q) before weighting: '
                    'bounded weights (paper, Theorem 3); 0: unbounded (eq. 3)', only=fim))

  c.learners = key('ol,maml_cl,modular', 'comma-separated learners to run (each has its '
                   'own folder and checkpoint)', RUN)
  # The paper: single networks 5 x 256, ours 4 experts of 5 x 128.
  c.methods = ml_collections.ConfigDict({
      'mean': method(1),     # the trivial answer: every signal's own mean (nothing tuned)
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
  # Knobs of the baselines that are not meta-learned: they tie no checkpoint (RESULT;
  # mclnf_jax/tuning.py chooses them on meta-validation).
  buffer = key(0.1, "reservoir buffer of earlier tasks' samples, as a fraction of the "
               "signal's context samples (tasks x samples a task), the same at every scale",
               RESULT)
  replay = key(0.5, "fraction of each step's batch drawn from the buffer", RESULT)
  c.methods.er.update(buffer_fraction=buffer, replay_ratio=replay)
  c.methods.mer.update(
      buffer_fraction=buffer, replay_ratio=replay,
      beta=key(0.3, 'MER within-batch Reptile rate', RESULT),
      gamma=key(1.0, 'MER across-batch Reptile rate', RESULT),
      batches_per_step=key(2, 'MER batches per test-time step (its s)', RESULT),
      steps_per_batch=key(4, 'MER examples per batch (its k), one sequential SGD step each, '
                          'replay_ratio of them replayed; 0: one per sample. Its rate is '
                          'alpha = tto_lr / (s k beta gamma): tto_lr is the rate of a whole '
                          'test-time step, as for every learner', RESULT))
  c.methods.modular_fim.update(fisher_decay=key(
      0.0, "running per-task Fisher of Algorithm 1 (l. 8, 16): F_t = decay F_(t-1) + "
      "(1 - decay) F_batch, F_1 the task's first batch's, carried across inner and "
      "test-time steps; 0: each batch's own Fisher"))
  c.methods.ewc.update(ewc_lambda=key(1.0, 'lambda of (lambda/2) sum F (theta - theta*)^2, F '
                                      "the model's diagonal Fisher", RESULT))
  c.methods.oml.update(
      rln_layers=key(3, 'first dense layers forming the representation, updated by the '
                     'outer loop only'),
      online_batch=key(16, 'OML inner trajectory on grids: samples of the task fitted per '
                       'inner and test-time step, one small batch after another (Javed & '
                       'White); 0: the whole task at every step. Scenes fit their fresh '
                       'ray batches either way'))
  # MEIL-NeRF: inputs replayed from earlier tasks with the previous model's predictions.
  c.methods.meil_nerf = method(256, tto_opt='adam', tto_lr=1e-4)
  c.methods.meil_nerf.update(
      replay_size=key(1024, 'inputs of earlier tasks replayed at every step (drawn afresh)',
                      RESULT),
      replay_lambda=key(1.0, 'weight of the self-distillation (Charbonnier) loss', RESULT))

  c.meta = section(
      steps=key(1000, 'meta-steps to run; not in the checkpoint identity: raising it '
                'extends a run (see schedule_steps)', RESULT),
      schedule_steps=key(0, 'length of the cosine schedule of the outer rate (0: '
                         'meta.steps); the rate stays at its final value after it',
                         effective=keys.schedule_steps_of_config),
      batch_size=key(8, 'signals per meta-batch'),
      lr=key(1e-5, 'outer (Adam) learning rate at step 0'),
      lr_final_fraction=key(0.1, 'final outer rate as a fraction of lr (cosine decay)'),
      clip=key(1.0, 'global-norm clip of the meta-gradient'),
      inner_steps=key(3, 'inner-loop steps per task in meta-training'),
      first_order=key(False, 'first-order meta-gradient (no second derivatives)'),
      remat=key('step', 'what the meta-gradient keeps of each inner step: step (recompute '
                'it: least memory) | dots (keep matmul outputs) | none (keep all); see '
                'learners/base.py and BUILD_NOTES', RUN),
      val_every=key(100, 'meta-validation period in steps (it picks the best meta-params)'),
      log_every=key(50, 'log period in steps', RUN),
      save_every=key(500, 'checkpoint period in steps', RUN),
      rates_lr=key(1e-3, 'Meta-SGD: Adam rate of the log inner rates'),
      rates_clip=key(1.0, 'Meta-SGD: global-norm clip of the log rates'),
      spike_ratio=key(10.0, 'skip a meta-step whose meta-gradient norm exceeds this many '
                      'times the running mean of the accepted ones (0: never)'),
      max_bad_steps=key(20, 'stop after this many consecutive meta-steps skipped for a '
                        'non-finite meta-loss or meta-gradient, or a spike (0: never)', RUN),
      val_drop_warn=key(3.0, 'warn when meta-validation PSNR falls this many dB below the '
                        'best', RUN),
      init_from=key('', "a workdir whose learners' meta-params start this run "
                    '(checkpoints.py)'))

  c.eval = section(
      max_steps=key(4096, 'test-time optimisation steps per task, evaluated at powers of '
                    'two up to this', RESULT),
      batch_size=key(8, 'meta-test signals evaluated at once', RESULT),
      num_shown=key(2, 'meta-test signals drawn in the reconstruction figures', RESULT))

  # The device mesh (mclnf_jax/distributed.py; README "Many devices and hosts").
  c.mesh = section(
      data=key(0, "devices the meta-batch and eval batch are split over (axis 'data'); "
               '0: every device (of every process) / mesh.expert', RUN),
      expert=key(1, "devices a modular learner's experts (tasks) are split over in "
                 "meta-training (axis 'expert'; an option, BUILD_NOTES Scale-out)", RUN))
  return c


def base_config() -> ml_collections.ConfigDict:
  """The defaults of every key (a plain ConfigDict)."""
  return keys.defaults(declared_config())


def declarations() -> dict[str, keys.Key]:
  """{'section.key': its declaration} of every key of `base_config()`."""
  return keys.declarations(declared_config())


def set_widths(c: ml_collections.ConfigDict, single: int, expert: int) -> None:
  """Parameter-matched widths: `expert` for the modular methods, `single` for the rest."""
  for m in learners.METHODS:
    c.methods[m.name].width = expert if m.modular else single

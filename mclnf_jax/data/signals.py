"""Config -> signals: the meta-train and meta-test signals of a split, by modality.

Images, video and audio come as one array [N, *signal_shape] (float32); scenes as a list
of `SceneSignal`s (views of a block, with held-out views for meta-test blocks).
"""
import ml_collections

from mclnf_jax.errors import UserError


def load_signals(config: ml_collections.ConfigDict, split: str):
  """All signals of a split ('train': meta-train + meta-validation; 'test')."""
  d = config.data
  data = ml_collections.ConfigDict(d.to_dict())
  data.num_signals = (d.num_train + d.num_val if d.num_train else 0) if split == 'train' \
      else d.num_test
  if config.modality == 'image':
    from mclnf_jax.data.images import load_images
    return load_images(data, split)
  if config.modality == 'video':
    from mclnf_jax.data.video import load_video
    return load_video(data, split)
  if config.modality == 'audio':
    from mclnf_jax.data.audio import load_audio
    return load_audio(data, split)[..., None]
  if config.modality == 'nerf':
    return scene_signals(config)[split]
  raise UserError(f'unknown config.modality={config.modality!r}')


def scene_signals(config: ml_collections.ConfigDict) -> dict[str, list]:
  """Scene signals of both splits (see data/scenes.py; cached per settings)."""
  from mclnf_jax.data.scenes import scene_signals as load
  return load(config.data.to_dict(), config.scene.to_dict(), tuple(config.tasks.grid))

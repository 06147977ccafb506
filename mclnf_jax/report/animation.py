"""GIFs and MP4s: ground truth and each method side by side, a name strip above each."""
from __future__ import annotations

import os

import numpy as np

from mclnf_jax import files
from mclnf_jax.errors import UserError
from mclnf_jax.report.canvas import GROUND_TRUTH, columns
from mclnf_jax.report.tables import display_name
from mclnf_jax.visuals import Animation

LABEL_HEIGHT = 16          # pixels of the name strip above each GIF panel
_GAP = 2                   # pixels between GIF panels


def write_gif(path: str | os.PathLike, animation: Animation) -> None:
  """Ground truth (if any) then each method side by side, a name strip above each panel."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  images = [Image.fromarray(f) for f in animation_frames(path, animation)]
  files.atomic_write(path, lambda f: images[0].save(
      f, format='GIF', save_all=True, append_images=images[1:],
      duration=animation.frame_ms, loop=0), binary=True)


def write_mp4(path: str | os.PathLike, animation: Animation) -> bool:
  """The same frames as `write_gif` as H.264 MP4 through PyAV; False (nothing written)
  where PyAV or its H.264 encoder is missing."""
  try:
    import av  # pylint: disable=g-import-not-at-top
    av.codec.Codec('libx264', 'w')
  except Exception:  # pylint: disable=broad-except
    return False
  frames = animation_frames(path, animation)
  h, w = frames.shape[1:3]
  frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode='edge')
  rate = max(1, round(1000 / animation.frame_ms))

  def write(f):
    with av.open(f, mode='w', format='mp4') as container:
      stream = container.add_stream('libx264', rate=rate)
      stream.width, stream.height = frames.shape[2], frames.shape[1]
      stream.pix_fmt = 'yuv420p'
      stream.options = {'crf': '18'}
      for frame in frames:
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
      container.mux(stream.encode())
  files.atomic_write(path, write, binary=True)
  return True


def animation_frames(path: str | os.PathLike, animation: Animation) -> np.ndarray:
  """uint8 [F, LABEL_HEIGHT + H', W', 3]: every panel's frames scaled up and labelled."""
  labels = animation.labels or {}
  panels = [] if animation.truth is None else [(GROUND_TRUTH, animation.truth)]
  panels += [(labels.get(m, display_name(m)), animation.recons[m])
             for m in columns(animation.recons)]
  if not panels:
    raise UserError(f'write_gif: nothing to animate for {os.fspath(path)}')
  frames = [_rgb_frames(video) for _, video in panels]
  if len({f.shape for f in frames}) != 1 or not len(frames[0]):
    raise UserError(f'write_gif: panels of shapes {[f.shape for f in frames]}; give every '
                    'panel the same [F, H, W, 3] frames (F > 0).')
  height = frames[0].shape[1]
  scale = max(1, -(-animation.min_height // height))
  frames = [f.repeat(scale, axis=1).repeat(scale, axis=2) for f in frames]
  width = frames[0].shape[2]
  strips = [_label_strip(name, width) for name, _ in panels]
  gap = np.full((LABEL_HEIGHT + height * scale, _GAP, 3), 255, np.uint8)
  images = []
  for f in range(len(frames[0])):
    tiles = [np.concatenate([strip, video[f]], axis=0) for strip, video in zip(strips, frames)]
    row = [x for tile in tiles for x in (tile, gap)][:-1]
    images.append(np.concatenate(row, axis=1))
  return np.stack(images)


def _rgb_frames(video: np.ndarray) -> np.ndarray:
  """[F, H, W, 3] (or [F, H, W] / [F, H, W, 1]) in [0, 1] -> uint8 [F, H, W, 3]."""
  video = np.clip(np.asarray(video, np.float32), 0.0, 1.0)
  if video.ndim == 3:
    video = video[..., None]
  if video.ndim != 4 or video.shape[-1] not in (1, 3):
    raise UserError(f'write_gif: frames of shape {video.shape}; pass [F, H, W, 3] in [0, 1].')
  video = np.broadcast_to(video, video.shape[:3] + (3,))
  return (video * 255).round().astype(np.uint8)


def _label_strip(text: str, width: int) -> np.ndarray:
  """[LABEL_HEIGHT, width, 3]: the name in white on dark grey, centred (cut if too long)."""
  from PIL import Image, ImageDraw, ImageFont  # pylint: disable=g-import-not-at-top
  strip = Image.new('RGB', (width, LABEL_HEIGHT), (40, 40, 40))
  draw = ImageDraw.Draw(strip)
  font = ImageFont.load_default(size=LABEL_HEIGHT - 4)
  left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
  x = max(0, (width - (right - left)) // 2 - left)
  y = (LABEL_HEIGHT - (bottom - top)) // 2 - top
  draw.text((x, y), text, fill=(255, 255, 255), font=font)
  return np.asarray(strip)

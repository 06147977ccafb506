"""The one atomic write of the package: every result file appears whole or not at all.

A writer gets an open file beside the target (a hidden `.<name>.<random>.tmp`), is
flushed and fsynced, and the file is renamed into place; a crash leaves at most that
hidden temporary file, which no reader looks at. JSON, CSV, Markdown, PNG, GIF, WAV and
npz outputs all go through `atomic_write`.
"""
import csv
import io
import json
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable[[io.IOBase], None],
                 binary: bool = False) -> None:
  """Calls `write(file)` on a temporary file beside `path`, then renames it into place."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, f'.{os.path.basename(path)}.{uuid.uuid4().hex}.tmp')
  try:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    mode, kwargs = ('wb', {}) if binary else ('w', {'encoding': 'utf-8', 'newline': ''})
    with os.fdopen(fd, mode, **kwargs) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
  atomic_write(path, lambda f: f.write(text))


def write_json(path: str | os.PathLike, obj: Any) -> None:
  atomic_write(path, lambda f: json.dump(obj, f, indent=1, sort_keys=True))


def write_csv(path: str | os.PathLike, header: Sequence[str],
              rows: Sequence[Sequence[object]]) -> None:
  def write(f):
    writer = csv.writer(f, lineterminator='\n')
    writer.writerow(header)
    writer.writerows(rows)
  atomic_write(path, write)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
  atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)

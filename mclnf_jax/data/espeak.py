"""libespeak-ng (bundled by the PyPI package `espeakng-loader`), driven through ctypes.

`synthesize(text, voice, rate, pitch)` gives real formant-synthesised English speech
as float32 at 16 kHz; the engine's C state is global, so one instance serves the
process behind a lock.
"""

from __future__ import annotations

import ctypes
import functools
import threading

import numpy as np

from mclnf_jax.data import common
from mclnf_jax.errors import UserError

_ESPEAK_RATE = 22050  # Hz, what libespeak-ng produces.
_AUDIO_OUTPUT_RETRIEVAL = 1  # espeak_AUDIO_OUTPUT: audio comes to our callback.
_ESPEAK_RATE_PARAM = 1  # espeak_PARAMETER espeakRATE (words per minute).
_ESPEAK_PITCH_PARAM = 3  # espeak_PARAMETER espeakPITCH (0..100, 50 = normal).
_POS_CHARACTER = 1  # espeak_POSITION_TYPE.
_CHARS_UTF8 = 1  # espeak_Synth flag: the text is UTF-8.


class _Espeak:
  """The process-wide libespeak-ng instance (its C state is global)."""

  def __init__(self):
    self._lib = _load_library()
    self._chunks: list[np.ndarray] = []
    self._lock = threading.Lock()
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int,
                                     ctypes.POINTER(ctypes.c_short),
                                     ctypes.c_int, ctypes.c_void_p)
    # Kept on self so the C side never calls a garbage-collected function.
    self._callback = callback_type(self._collect)
    self._initialize()

  def _initialize(self) -> None:
    """Starts the engine in retrieval mode with the package's voice data."""
    import espeakng_loader  # pylint: disable=g-import-not-at-top
    lib = self._lib
    data_path = espeakng_loader.get_data_path().encode()
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_RETRIEVAL, 0, data_path, 0)
    if rate != _ESPEAK_RATE:
      raise UserError(
          f'libespeak-ng failed to initialise (returned {rate}) with data '
          f"'{data_path.decode()}'; reinstall it: pip install "
          '--force-reinstall espeakng-loader.')
    lib.espeak_SetSynthCallback(self._callback)

  def _collect(self, wav, num_samples: int, events) -> int:
    """Synth callback: copies each chunk of int16 samples; 0 = keep going."""
    del events
    if wav and num_samples > 0:
      self._chunks.append(
          np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
    return 0

  def speak(self, text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
    """Synthesises `text`; returns int16 samples [T] at 22.05 kHz."""
    with self._lock:
      self._chunks = []
      if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise UserError(
            f"eSpeak-NG has no voice '{voice}'; use a name from "
            'espeakng_loader/espeak-ng-data/voices or lang (e.g. en-us).')
      self._lib.espeak_SetParameter(_ESPEAK_RATE_PARAM, rate, 0)
      self._lib.espeak_SetParameter(_ESPEAK_PITCH_PARAM, pitch, 0)
      data = text.encode('utf-8') + b'\0'
      status = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0,
                                      _CHARS_UTF8, None, None)
      self._lib.espeak_Synchronize()
      if status != 0:
        raise RuntimeError(
            f'espeak_Synth failed with status {status} on {text!r}')
      if not self._chunks:
        return np.zeros((0,), np.int16)
      return np.concatenate(self._chunks)


def _load_library() -> ctypes.CDLL:
  """Loads the libespeak-ng of `espeakng-loader`, or says how to get it."""
  try:
    import espeakng_loader  # pylint: disable=g-import-not-at-top
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
  except (ImportError, OSError, RuntimeError) as e:
    raise UserError(
        f'cannot load libespeak-ng for the embedded speech dataset ({common.one_line(e)}); '
        'install it: pip install espeakng-loader.') from e
  _declare_signatures(lib)
  return lib


def _declare_signatures(lib: ctypes.CDLL) -> None:
  """C argument types of the speak_lib.h functions we call (for ctypes)."""
  c_int, c_uint, c_ptr = ctypes.c_int, ctypes.c_uint, ctypes.c_void_p
  lib.espeak_Initialize.argtypes = [c_int, c_int, ctypes.c_char_p, c_int]
  lib.espeak_Initialize.restype = c_int
  lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
  lib.espeak_SetParameter.argtypes = [c_int, c_int, c_int]
  lib.espeak_Synth.argtypes = [
      c_ptr, ctypes.c_size_t, c_uint, c_int, c_uint, c_uint, c_ptr, c_ptr]


@functools.cache
def _engine() -> _Espeak:
  """The single engine of this process, created on first use."""
  return _Espeak()


def synthesize(text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
  """Speech for `text` as float32 [T] at 16 kHz, in [-1, 1] (not normalised)."""
  raw = _engine().speak(text, voice, rate, pitch)  # [T22] int16
  return common.resample_to_16k(raw.astype(np.float32) / 32768.0, _ESPEAK_RATE)

"""Readable logs for the command-line entry points."""
import logging

from absl import logging as absl_logging


class _OnlyOurInfo(logging.Filter):
  """Drops library INFO chatter (orbax, XLA, TFDS); keeps warnings and our progress lines."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or 'mclnf_jax' in record.pathname


def quiet_libraries() -> None:
  absl_logging.get_absl_handler().addFilter(_OnlyOurInfo())

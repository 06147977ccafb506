"""User-facing errors: one line that names the problem and the fix.

`main` catches `UserError` and prints its message without a traceback, so raise it
(never a bare assert or a deep JAX error) for anything a user can get wrong: paths,
config values, dataset contents.
"""


class UserError(ValueError):
  """A problem with the user's input; the message says what is wrong and what to do."""

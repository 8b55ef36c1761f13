"""Errors the user can act on, kept apart from programming errors.

`UserError` carries a message that names the parameter and what is allowed; the CLI
turns it into exit code 2 and the app into `st.error`, never a traceback.
"""


class UserError(ValueError):
    """Bad input from a user: a spec, a path, a file, a hyperparameter."""


class Cancelled(Exception):
    """Raised inside long work when the user asked to stop it."""


class DivergedError(RuntimeError):
    """Training produced a non-finite loss; the run is recorded as failed."""


def refuse_duplicate(kind: str, name: str, registry) -> None:
    """Registries (datasets, models, methods, plug-ins) refuse a second entry under a name
    rather than replace the first without a word: a programming error, not a user's."""
    if name in registry:
        raise ValueError(f"{kind} {name!r} is already registered")

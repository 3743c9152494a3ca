"""Resolve ``{secret: NAME}`` references.

The environment backend reads ``SOPHIA_SECRET_<NAME>``. The encrypted credential
store and Vault backends (connectors issue) plug in here; callers only ever use
:func:`resolve`.
"""

from __future__ import annotations

import os

from sophia_lib.config.typing import SecretRef
from sophia_lib.errors import SecretError

ENV_PREFIX = "SOPHIA_SECRET_"


def resolve(ref: SecretRef) -> str:
    """The secret's value. Never log or print it."""
    value = os.environ.get(ENV_PREFIX + ref.secret)
    if value is None:
        raise SecretError(
            f"secret {ref.secret!r} is not set.",
            fix=f"export {ENV_PREFIX}{ref.secret}=… (or store it in the credential store)",
        )
    return value

"""Secret lists in settings (``GOVCLOCK_ACK_SECRET``, ``GOVCLOCK_CLUSTER_SECRET``): the first signs,
all verify, so a secret can be rotated without a flag day."""

from __future__ import annotations

#: The shortest secret accepted, in bytes.
MIN_SECRET_BYTES = 16


def parse_secrets(text: str) -> tuple[str, ...]:
    """The secrets of a comma-separated list (``GOVCLOCK_ACK_SECRET``: the first signs, all
    verify); raises ValueError (without showing any secret) for an empty list or one shorter
    than :data:`MIN_SECRET_BYTES`."""
    secrets = tuple(part.strip() for part in text.split(",") if part.strip())
    if not secrets:
        raise ValueError("no secret given (a comma-separated list of secrets)")
    for i, secret in enumerate(secrets, start=1):
        size = len(secret.encode("utf-8"))
        if size < MIN_SECRET_BYTES:
            raise ValueError(
                f"secret {i} of {len(secrets)} is {size} bytes; at least {MIN_SECRET_BYTES} "
                "are needed (32 random bytes recommended: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
    return secrets

"""Stateless credentials, re-exported for the server layer and for integrations' tests.

They live in ``signaling`` (``tokens.py``, ``passwords.py``, ``identity.py``), which checks them on
every connection; the server layer imports them from there, never the other way round.
"""

from signaling import (IdentityError, Signer, TokenClaims, TokenError, hash_password, sign_identity,
                       verify_identity, verify_password)

__all__ = ["IdentityError", "Signer", "TokenClaims", "TokenError", "hash_password", "sign_identity",
           "verify_identity", "verify_password"]

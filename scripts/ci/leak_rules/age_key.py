"""A detect-secrets plugin for age private keys, which its default plugins
miss: pulse's example secrets are encrypted with sops and age, so an age
identity is the key most likely to be committed by mistake."""
import re

from detect_secrets.plugins.base import RegexBasedDetector


class AgeSecretKeyDetector(RegexBasedDetector):
    """An age X25519 identity: AGE-SECRET-KEY-1 and 58 bech32 characters."""

    secret_type = "age Secret Key"  # pragma: allowlist secret (a name)
    denylist = [re.compile(r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}")]

"""antidistill.watermark: keys, the one keyed hash, protections (LogitsProcessors) and detectors."""
from .detection import Detection, Family, TokenHashDetector
from .errors import UserError, atomic_write
from .keys import KEY_ENV, Key, load_key, resolve_key
from .spec import Protection, known_schemes, parse_protection
from .vocab import check_vocab

# Importing the scheme modules registers them with `parse_protection`.
from . import ads, doge, gumbel, kgw, poe, synthid, temperature, trace, unigram  # noqa: E402,F401

__all__ = ["Detection", "Family", "TokenHashDetector", "UserError", "atomic_write", "KEY_ENV", "Key", "load_key",
           "resolve_key",
           "Protection", "known_schemes", "parse_protection", "check_vocab"]

"""Checks at the public entry points, before any tokenizer or tensor work."""

from __future__ import annotations

import logging
import numbers
import re
from collections.abc import Iterable

from .errors import InputError

__all__ = ["check_positive_int", "validate_text", "validate_texts"]

logger = logging.getLogger("lfm_core")

# UTF-16 surrogate code points: a Python str can hold them (json.loads('"\\ud800"'),
# open(..., errors="surrogateescape")), but they cannot be encoded to UTF-8, so the
# tokenizer, uuid5 point ids and Qdrant's JSON would each fail on them deep inside.
_SURROGATE = re.compile("[\ud800-\udfff]")


def validate_texts(texts: Iterable[str], name: str = "texts") -> list[str]:
    """Return ``texts`` as a list of ``str``, or raise ``TypeError`` naming the bad position.

    A generator or other one-shot iterable is consumed exactly once. A bare string is
    refused: it is iterable, and silently encoding each character is a classic bug.
    Surrogate code points (scraped or badly decoded text) are repaired as a UTF-16
    decoder would: a high + low pair becomes its character, an unpaired half becomes
    U+FFFD; one warning says how many texts were repaired.

    Args:
        texts: the texts to encode, in the caller's order.
        name: how the argument is called in error messages.

    Returns:
        A new list holding the same ``str`` objects (repaired copies where needed).

    Raises:
        TypeError: ``texts`` is a ``str``/``bytes`` or not iterable, or an item is not a ``str``.

    >>> validate_texts(t for t in ["a", "b"])
    ['a', 'b']
    >>> validate_texts(["a", None])
    Traceback (most recent call last):
    ...
    TypeError: texts[1] is None; expected str
    >>> validate_texts(["x\\ud800y", "\\ud83d\\ude00"])
    ['x\ufffdy', '😀']
    """
    if isinstance(texts, (str, bytes, bytearray)):
        raise TypeError(
            f"{name} must be a list of str, not a single {type(texts).__name__}; wrap it: [{name}]"
        )
    try:
        items = list(texts)
    except TypeError:
        raise TypeError(f"{name} must be an iterable of str, not {type(texts).__name__}") from None
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] is {_describe(item)}; expected str")
    repaired = [i for i, item in enumerate(items) if not item.isascii() and _SURROGATE.search(item)]
    for i in repaired:
        items[i] = _repair_surrogates(items[i])
    if repaired:
        logger.warning(
            "%d of %d %s held UTF-16 surrogate code points, which cannot be encoded (first: "
            "%s[%d]); unpaired ones were replaced with U+FFFD",
            len(repaired),
            len(items),
            name,
            name,
            repaired[0],
        )
    return items


def _repair_surrogates(text: str) -> str:
    # Read through UTF-16 as JavaScript or Rust's from_utf16_lossy would: a high + low
    # pair joins into its character, an unpaired half becomes U+FFFD.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def validate_text(text: str, name: str = "query") -> str:
    """Return ``text`` if it is a ``str``, else raise ``TypeError`` naming ``name``."""
    if not isinstance(text, str):
        raise TypeError(f"{name} is {_describe(text)}; expected str")
    return text


def _describe(value: object) -> str:
    """``None``, ``a bytes``, ``an int``: how a wrong value is named in messages."""
    if value is None:
        return "None"
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= minimum``.

    numpy integers are accepted; ``bool``, floats and strings are refused (``True`` and
    ``2.5`` are mistakes, not sizes).

    Raises:
        TypeError: ``value`` is not an integer, naming ``name``.
        InputError: ``value`` is below ``minimum``, naming ``name``.

    >>> check_positive_int(8, "max_batch_size")
    8
    >>> check_positive_int(True, "max_batch_size")
    Traceback (most recent call last):
    ...
    TypeError: max_batch_size must be an int, not bool
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)

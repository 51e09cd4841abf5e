"""Checks at the public entry points, before any tokenizer or tensor work."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["validate_texts"]


def validate_texts(texts: Iterable[str], name: str = "texts") -> list[str]:
    """Return ``texts`` as a list of ``str``, or raise ``TypeError`` naming the bad position.

    A generator or other one-shot iterable is consumed exactly once. A bare string is
    refused: it is iterable, and silently encoding each character is a classic bug.

    Args:
        texts: the texts to encode, in the caller's order.
        name: how the argument is called in error messages.

    Returns:
        A new list holding the same ``str`` objects.

    Raises:
        TypeError: ``texts`` is a ``str``/``bytes`` or not iterable, or an item is not a ``str``.

    >>> validate_texts(t for t in ["a", "b"])
    ['a', 'b']
    >>> validate_texts(["a", None])
    Traceback (most recent call last):
    ...
    TypeError: texts[1] is None; expected str
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
    return items


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

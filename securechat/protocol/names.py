"""Look-alike usernames: the confusable skeleton two names must not share (PROTOCOL.md 3.2).

Owns: ``skeleton(name)``, the form under which the registry compares names. Names are already NFKC-normalised,
casefolded and limited to ``a-z 0-9 _ . -`` (``fields.normalize_username``), so what remains are look-alikes
inside that alphabet. The skeleton follows Unicode UTS #39 ("confusable detection"): every character is
replaced by its prototype in the confusables data, restricted to our alphabet; ``tests/test_names.py`` checks
``UTS39_ASCII`` against the ``confusable-homoglyphs`` package's copy of that data, so the table cannot drift.
On top of UTS #39 the separators ``_ . -`` are left out of the skeleton: a dot is easily missed anywhere
(``carol.`` and ``car.ol`` look like ``carol``), and ``_``, ``-`` and ``.`` are easily taken for each other. Must not: do I/O (the table is data in this module).
"""

from __future__ import annotations

# UTS #39 confusables between strings of a-z 0-9 _ . - after casefolding, mapped to the prototype (the letter).
# Capital I ~ l is in UTS #39 too, but names are shown casefolded ("ian"), where i and l do not look alike,
# so it is left out on purpose: it would make "ian" and "lan" one name.
UTS39_ASCII: dict[str, str] = {"0": "o", "1": "l", "rn": "m"}
SEPARATORS = "_.-"


def skeleton(name: str) -> str:
    """The look-alike class of a normalised username: equal skeletons mean the names look alike.

    >>> skeleton("a1ice") == skeleton("alice"), skeleton("rnallory"), skeleton("carol.")
    (True, 'mallory', 'carol')
    """
    out = name
    for source, prototype in UTS39_ASCII.items():
        out = out.replace(source, prototype)
    for separator in SEPARATORS:
        out = out.replace(separator, "")
    return out

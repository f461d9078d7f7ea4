"""Words of a text as every scorer sees them: tokens and the stopwords left out of comparisons."""

from __future__ import annotations

import re

APOSTROPHES = re.compile(r"['\u2018\u2019\u02bc]")
_WORD = re.compile(r"\w+")


def tokens(text: str | None) -> list[str]:
    """Lowercased word tokens with punctuation stripped (apostrophes dropped, not split on)."""
    if not text:
        return []
    return _WORD.findall(APOSTROPHES.sub("", text.lower()))


STOPWORDS = frozenset("""
a about above across after again against all almost along also although always am among an
and another any anyone anything are around as at be because been before being below between
both but by can cannot cant could couldnt did didnt do does doesnt doing done dont down during
each either else even ever every everything few for from further get gets got had has have
having he her here hers herself him himself his how however i if in into is isnt it its itself
just least less like made make many may me might more most much must my myself neither no nor
not nothing now of off often on once one only onto or other others otherwise ought our ours
ourselves out over own per perhaps quite rather really same shall she should shouldnt since so
some something still such than that thats the their theirs them themselves then there therefore
these they theyre thing things this those though through thus to too toward towards under unless
until up upon us use used using very via was wasnt we well were what whatever when whenever where
whereas whether which while who whom whose why will with within without wont would wouldnt yes
yet you your youre yours yourself yourselves
""".split())


def stem(tok: str) -> str:
    """A crude stem: a plural "s" dropped, then the first 6 characters ("investigating" ~
    "investigate"), enough to compare meeting-note items word by word."""
    if len(tok) > 3 and tok.endswith("s") and not tok.endswith("ss"):
        tok = tok[:-1]
    return tok[:6]

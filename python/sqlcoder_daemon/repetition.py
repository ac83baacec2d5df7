"""Stop a completion that has fallen into an exact loop, instead of decoding it to ``max_new_tokens``.

A small or badly prompted model often repeats one phrase (``AND x = 1 AND x = 1
...``) until ``max_new_tokens``: seconds of decoding for text that is then
cut mid-statement. The guard looks at the completion's own tokens only: when
its last ``span`` tokens (``--repetition-guard-tokens``, at least three
periods) are one block of at most :data:`MAX_PERIOD` tokens repeated back to
back, the completion ends there with finish reason ``repetition``.

Why this and not ``repetition_penalty`` or ``no_repeat_ngram_size``: those
change which token wins at every step, so the SQL would differ from what
Defog's decoding (greedy or beam search, no penalty, sql-eval's settings)
produces. The guard never changes a token's score: under greedy decoding the
text it returns is exactly a prefix of what decoding to ``max_new_tokens``
returns, and sql-eval cuts that text at its first ``;`` just as ``ask`` does. Beam search
is left unguarded: transformers would finish each looping candidate as it does at EOS, and
another beam than Defog's could win. llama.cpp decodes greedily; so does transformers with
``num_beams`` 1.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MAX_PERIOD", "loops"]

#: The longest repeated block looked for, in tokens.
MAX_PERIOD = 64


def loops(tokens: Sequence[int], span: int) -> bool:
    """True when the last ``span`` tokens (or three periods, if more) repeat one block of at most
    ``MAX_PERIOD`` tokens back to back. ``span`` 0 turns the guard off."""
    if span <= 0:
        return False
    n = len(tokens)
    if n < span:
        return False
    tail = list(tokens[-min(n, max(span, 3 * MAX_PERIOD)):])
    for period in range(1, MAX_PERIOD + 1):
        need = max(span, 3 * period)
        if need > len(tail):
            break
        window = tail[-need:]
        if window[period:] == window[:-period]:
            return True
    return False

"""Server-Sent Events, and the invariant that makes streaming a diffusion hole safe.

The hole is not written left to right, so a stream sends only its committed left part
(dcode.complete.response.committed_text), and each chunk only what extends the text sent so far. The last
chunk carries the rest of the final `content`, so the chunks concatenate to exactly that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


def event(data: dict | str) -> bytes:
    """One `data:` event; OpenAI's stream ends with the bare `[DONE]`."""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"data: {payload}\n\n".encode("utf-8")


class StreamDiverged(Exception):
    """The final text does not start with what was already sent (committed_text's promise broke)."""


@dataclass
class SentText:
    sent: str = ""

    def extend(self, committed: str) -> str:
        """The new characters of `committed`, if it extends what was sent ("" otherwise)."""
        if len(committed) <= len(self.sent) or not committed.startswith(self.sent):
            return ""
        delta, self.sent = committed[len(self.sent):], committed
        return delta

    def rest(self, final: str) -> str:
        if not final.startswith(self.sent):
            raise StreamDiverged(f"streamed {self.sent!r} but the answer is {final!r}")
        rest, self.sent = final[len(self.sent):], final
        return rest

"""Where the engine's time goes per relayed message (in-process, one thread): ``python -m benchmarks.engine_costs``.

Times the steps ``ServerProtocol`` performs for one inbound chat_send in its own record: open the record
(AES-256-GCM), strict decode of the inner frame, build and encode the relayed chat_message, and seal one
outbound record for a recipient (amortised in batches under load). Prints JSON.
"""

from __future__ import annotations

import json
import os
import time

from securechat.protocol import messages as m
from securechat.protocol.channel import RecordLayer
from securechat.protocol.codec import decode_message, encode_frame, split_frames


def _time(fn, n: int = 2000) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return round((time.perf_counter() - t) / n * 1e6, 1)


def main() -> dict:
    key = os.urandom(32)
    send = m.ChatSend(rid=None, chat_id="c" + "ab" * 16, epoch=1, seq=5, ciphertext=os.urandom(80),
                      signature=os.urandom(64))
    inner = encode_frame(send)
    a, b = RecordLayer(send_key=key, receive_key=key), RecordLayer(send_key=key, receive_key=key)
    sealed = [a.seal(inner) for _ in range(2000)]
    it = iter(sealed)
    out = {
        "record_open_us": _time(lambda: b.open(next(it))),
        "split_and_strict_decode_us": _time(lambda: decode_message(split_frames(inner)[0])),
        "build_and_encode_chat_message_us": _time(lambda: encode_frame(m.ChatMessage(
            chat_id=send.chat_id, epoch=1, sender="u0001", seq=5, ciphertext=send.ciphertext,
            signature=send.signature))),
        "record_seal_1_frame_us": _time(lambda: a.seal(inner)),
        "record_seal_20_frames_us": _time(lambda: a.seal(inner * 20), 500),
        "encode_record_frame_us": _time(lambda: encode_frame(m.Record(data=sealed[0]))),
        "frame_bytes": len(inner),
    }
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

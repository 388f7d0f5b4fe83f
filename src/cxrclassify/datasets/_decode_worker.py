"""A decoding worker: ``python -m cxrclassify.datasets._decode_worker`` (started by :class:`DecodePool`).

Reads requests (paths, image size, common resolution, pixel limit) from standard
input and answers each with ``("ok", images)`` or ``("error", (type name,
message))`` on standard output, until standard input closes. Anything the
decoding code prints goes to standard error, never into the answers.
"""

from __future__ import annotations

import os
import sys


def decode_request(request: dict):
    """Decode and resize the files of one request exactly as :meth:`LazyImages.decode` does (no ``lungs``)."""
    import numpy as np

    from ._images import read_image, resize

    size, common = request["image_size"], request["common_resolution"]
    out = np.empty((len(request["paths"]), size, size, 3), dtype=np.uint8)
    for position, path in enumerate(request["paths"]):
        rgb = read_image(path, max_pixels=request["max_pixels"])
        if common is not None:
            rgb = resize(rgb, common)
        out[position] = resize(rgb, size)
    return out


def serve(requests, answers) -> None:
    """Answer every request read from ``requests`` on ``answers`` until ``requests`` ends."""
    from ..exceptions import TruncatedFrameError
    from ._decode_pool import read_frame, write_frame

    while True:
        try:
            request = read_frame(requests)
        except TruncatedFrameError:
            return
        try:
            answer = ("ok", decode_request(request))
        except Exception as error:  # noqa: BLE001 - every failure goes back to the caller, by name
            answer = ("error", (type(error).__name__, str(error)))
        write_frame(answers, answer)


def main() -> None:
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print, from Python or C, must not corrupt the answers
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()

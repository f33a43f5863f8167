"""Reading the tensorboard event files a run wrote, for the tests that check what was logged.

The event protobuf comes from tensorboardX (a dependency) or, where only the `tensorboard` package
is installed (GPU images; the writer then is torch.utils.tensorboard's), from tensorboard itself.
"""
from pathlib import Path

import pytest


def _event_pb2():
    try:
        from tensorboardX.proto import event_pb2
    except ImportError:
        try:
            from tensorboard.compat.proto import event_pb2
        except ImportError:
            pytest.skip("neither tensorboardX nor tensorboard is installed to read event files")
    return event_pb2


def read_events(folder: Path) -> list:
    """Every Event in folder's events.out.tfevents.* files, in file order."""
    event_pb2 = _event_pb2()
    events = []
    for f in sorted(Path(folder).glob("events.out.tfevents.*")):
        data, pos = f.read_bytes(), 0
        while pos < len(data):  # TFRecord framing: u64 length, u32 crc, payload, u32 crc
            n = int.from_bytes(data[pos:pos + 8], "little")
            events.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + n]))
            pos += 12 + n + 4
    return events

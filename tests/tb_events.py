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
    """Every Event in folder's events.out.tfevents.* files, the files in the order they were
    begun (their first event's wall time; not their names, whose suffix .PID.N sorts writer 10
    before writer 9), each file's events in file order."""
    event_pb2 = _event_pb2()
    files = []
    for f in Path(folder).glob("events.out.tfevents.*"):
        data, pos, events = f.read_bytes(), 0, []
        while pos < len(data):  # TFRecord framing: u64 length, u32 crc, payload, u32 crc
            n = int.from_bytes(data[pos:pos + 8], "little")
            events.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + n]))
            pos += 12 + n + 4
        files.append((events[0].wall_time if events else float("inf"), f.name, events))
    return [ev for _, _, events in sorted(files, key=lambda t: t[:2]) for ev in events]

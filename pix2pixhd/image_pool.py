"""CycleGAN's history of generated images (Shrivastava et al. 2017, as Zhu et al. 2017 use it).

Each discriminator is updated on a batch in which every generated image is, with probability
1/2 once the pool is full, swapped for one generated at an earlier step: D keeps seeing the
generators' past modes and the two players oscillate less. The rule is the reference's
(junyanz/pytorch-CycleGAN-and-pix2pix ``util/image_pool.py``): while fewer than ``size`` images
are held, each new image is stored and returned; afterwards a coin flip either returns the new
image, or stores it in place of a uniformly drawn one and returns the old one (in a batch of
several, only an old one of the new one's size: one of another size could not be stacked with
the rest).

The draws come from the pool's own ``torch.Generator`` (CPU), not the global RNGs, so nothing
else a run does moves them; :meth:`state_dict` holds the images and that generator's state, so
a resumed run draws exactly what the uninterrupted run would have. Images are stored detached,
as given (device, dtype and memory layout: [1, C, H, W] each).
"""
from __future__ import annotations

import torch

from pix2pixhd.errors import ConfigError


class ImagePool:
    """``pool.query(fake)`` -> the batch D trains on: [N, C, H, W] in, [N, C, H, W] out, each
    sample the new one or a stored older one, detached from G's graph. ``size`` 0: the input
    itself (detached: D's update must not backpropagate into G, whose graph is freed by then)."""

    def __init__(self, size: int, seed: int = 0):
        if size < 0:
            raise ValueError(f"ImagePool: size={size} must be >= 0 (0 = no pool)")
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:   # no history: the batch itself, detached like every pool answer
            return images.detach()
        out = []
        for image in images.detach().split(1):
            if len(self.images) < self.size:
                # stored as a copy: a view would keep the whole batch (and its device memory) alive
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand((), generator=self.generator)) > 0.5:
                i = int(torch.randint(0, self.size, (), generator=self.generator))
                old, self.images[i] = self.images[i], image.clone()
                # an older image of another size (a resume with other crop options) cannot be
                # stacked with this batch's others: the new one is returned instead (alone, any
                # size goes: the trainer runs D on real and fake apart when their sizes differ)
                out.append(old if old.shape == image.shape or len(images) == 1 else image)
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        """The held images (on the CPU) and the generator's state; tensors only, so a checkpoint
        holding it loads with ``torch.load(weights_only=True)``."""
        return {"size": self.size, "images": [t.cpu() for t in self.images],
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu",
                        memory_format: torch.memory_format = torch.contiguous_format) -> None:
        if state["size"] != self.size:
            raise ConfigError(f"the checkpoint's image pool holds up to {state['size']} images, this "
                              f"run's --pool_size is {self.size}; resume with --pool_size {state['size']}")
        self.images = [t.to(device).contiguous(memory_format=memory_format) for t in state["images"]]
        self.generator.set_state(state["generator"])

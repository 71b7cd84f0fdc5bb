"""Model families by name. Adding a family is adding a file here and one line below."""

from __future__ import annotations

from ganforge.errors import ConfigError
from ganforge.models.base import Family
from ganforge.models.cyclegan import CycleGAN
from ganforge.models.dfgan import DFGAN
from ganforge.models.esrgan import ESRGAN
from ganforge.models.maskgit import MaskGIT
from ganforge.models.pix2pix import Pix2Pix
from ganforge.models.ragan import RAGAN
from ganforge.models.stargan import StarGAN
from ganforge.models.unit import UNIT
from ganforge.models.vqgan import VQGAN

FAMILIES: dict[str, type[Family]] = {family.name: family for family in (CycleGAN, DFGAN, UNIT,
                                                                      ESRGAN, StarGAN, VQGAN,
                                                                      MaskGIT, Pix2Pix, RAGAN)}
#: names a user may type for a family: the task it serves
ALIASES = {"text2image": "dfgan"}


def get_family(name: str) -> type[Family]:
    """The family class registered under ``name``."""
    try:
        return FAMILIES[ALIASES.get(name, name)]
    except KeyError:
        raise ConfigError(
            f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}"
        ) from None

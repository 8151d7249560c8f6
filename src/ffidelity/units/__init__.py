"""Units: what a removable piece of an input is (pixel, patch, time step, token, video tube, label group) and
how it is removed. Every kind follows the protocol of :class:`ffidelity.units.base.Units`."""

from ffidelity.units.base import Reference, Units
from ffidelity.units.grid import GridUnits, ImageUnits, fill_removed
from ffidelity.units.sequence import SequenceUnits
from ffidelity.units.token_drop import TokenDrop
from ffidelity.units.token_fill import TokenFill
from ffidelity.units.tokens import TokenUnits, check_token_ids
from ffidelity.units.video import GroupUnits, VideoUnits

__all__ = ["GridUnits", "GroupUnits", "ImageUnits", "Reference", "SequenceUnits", "TokenDrop", "TokenFill",
           "TokenUnits", "Units", "VideoUnits", "check_token_ids", "fill_removed"]

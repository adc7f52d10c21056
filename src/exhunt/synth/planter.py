"""What every planter of the generator holds: the world it writes into, its random stream, the
population and the shared schedule."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from .model import Ids
from .world import Schedule, World

if TYPE_CHECKING:
    from .benign import Population


class Planter:
    """Base of the attack, intrusion, mail-flow and theft planters."""

    def __init__(self, world: World, rng: random.Random, pop: Population, sched: Schedule) -> None:
        self.w = world
        self.tl = world.tl
        self.rng = rng
        self.ids = Ids(rng)
        self.pop = pop
        self.sched = sched

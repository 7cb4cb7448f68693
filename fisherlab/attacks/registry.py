"""The attack registry: name -> :class:`~fisherlab.attacks.method.AttackMethod`, with its defaults.

===============  ==============================================  ===============
``gmi``          :class:`~fisherlab.attacks.gmi.GMI`             GAN prior gmi
``kedmi``        :class:`~fisherlab.attacks.kedmi.KEDMI`         GAN prior kedmi
``whitebox``     :class:`~fisherlab.attacks.whitebox.WhiteBox`   none
``lomma-gmi``    :class:`~fisherlab.attacks.lomma.LommaGMI`      GAN prior gmi,
                                                                 surrogates
``lomma-kedmi``  :class:`~fisherlab.attacks.lomma.LommaKEDMI`    GAN prior kedmi,
                                                                 surrogates
``plgmi``        :class:`~fisherlab.attacks.plgmi.PLGMI`         GAN prior plgmi
===============  ==============================================  ===============

This table is the one list of attacks: the CLI's ``--attack`` choices, the
checks of :class:`~fisherlab.attacks.base.AttackConfig` and of
:func:`fisherlab.attack`, and the default step sizes all read it.
"""

from __future__ import annotations

from fisherlab.attacks.gmi import GMI
from fisherlab.attacks.kedmi import KEDMI
from fisherlab.attacks.lomma import LommaGMI, LommaKEDMI
from fisherlab.attacks.method import AttackMethod
from fisherlab.attacks.plgmi import PLGMI
from fisherlab.attacks.whitebox import WhiteBox
from fisherlab.errors import FisherlabError

ATTACKS: dict[str, type[AttackMethod]] = {
    m.name: m for m in (GMI, KEDMI, WhiteBox, LommaGMI, LommaKEDMI, PLGMI)
}
"""Attack name -> its class."""


def attack_method(name: str) -> type[AttackMethod]:
    """The attack called ``name``.

    Raises:
        FisherlabError: For an unknown name, listing the known ones.

    Example:
        >>> attack_method("gmi").default_lr
        0.01
    """
    if name not in ATTACKS:
        raise FisherlabError(f"unknown attack {name!r}: expected one of {', '.join(ATTACKS)}")
    return ATTACKS[name]


def attack_names(needs_prior: bool | None = None) -> list[str]:
    """Names of the registered attacks.

    Args:
        needs_prior: ``True``: only attacks with a GAN prior; ``False``: only
            those without; ``None``: all.

    Example:
        >>> attack_names(needs_prior=False)
        ['whitebox']
    """
    return [
        name
        for name, method in ATTACKS.items()
        if needs_prior is None or (method.prior is not None) == needs_prior
    ]

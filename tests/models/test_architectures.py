"""The architecture registry (fisherlab.models.architectures)."""

from __future__ import annotations

import pytest

from fisherlab.errors import FisherlabError
from fisherlab.models import build_model


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(FisherlabError, match="target_cnn"):
        build_model("alexnet", 5)

"""Where a model comes from: :func:`open_model` takes a module, a file or a model spec.

Every command and function that takes a model resolves it here, in one way:

* an ``nn.Module``: used as it is;
* an existing file: :func:`~fisherlab.models.checkpoint.load_model` (a
  fisherlab checkpoint; TorchScript or a pickle only with ``trust_pickle``);
* anything else: a model spec (:mod:`fisherlab.models.spec`), built fresh
  or with ``weights`` (a state dict).

A model that records no preprocessing (a foreign one) gets the input spec
the caller assumes (:func:`assumed_input_spec`: the data's own, with the
user's ``--input-size/--channels/--mean/--std`` on top), and the caller says
so: nothing is assumed silently.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from fisherlab.data.specs import InputSpec
from fisherlab.errors import FisherlabError
from fisherlab.models.architectures import ARCHITECTURES
from fisherlab.models.checkpoint import load_model
from fisherlab.models.meta import ModelMeta, model_meta
from fisherlab.models.spec import (
    build_from_spec,
    infer_shape_arguments,
    load_weights,
    parse_model_spec,
    read_weights,
)


@dataclass(frozen=True)
class InputOverrides:
    """Parts of an input spec the user gave (``None``: not given).

    Attributes:
        size: Side of the square input.
        channels: 1 or 3.
        mean: Per-channel mean (one value for all channels, or one each).
        std: Per-channel standard deviation.
    """

    size: int | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def given(self) -> bool:
        """Whether any part was given."""
        return any(v is not None for v in (self.size, self.channels, self.mean, self.std))

    def apply(self, base: InputSpec | None) -> InputSpec | None:
        """``base`` with the given parts replaced (checked like a stored spec)."""
        if base is None and (self.size is None or self.channels is None):
            return None
        spec = base or InputSpec(int(self.channels or 3), int(self.size or 1), None, None)
        if self.channels is not None:
            spec = spec.with_channels(self.channels)
        if self.size is not None:
            spec = replace(spec, size=self.size)
        if self.mean is not None:
            spec = replace(spec, mean=tuple(self.mean))
        if self.std is not None:
            spec = replace(spec, std=tuple(self.std))
        return InputSpec.from_dict(spec.to_dict())


def describe_input_spec(spec: InputSpec) -> str:
    """``"3x64x64, mean (0.5, 0.5, 0.5), std (0.5, 0.5, 0.5)"``-style text."""
    norm = (
        "no normalisation"
        if spec.mean is None
        else f"mean {tuple(round(v, 4) for v in spec.mean)}, std "
        f"{tuple(round(v, 4) for v in spec.std or ())}"
    )
    return f"{spec.channels}x{spec.size}x{spec.size}, {norm}"


def assumed_input_spec(
    model: nn.Module, data_spec: InputSpec | None, overrides: InputOverrides | None = None
) -> tuple[InputSpec | None, str | None]:
    """The input spec to use for ``model`` and, when it was assumed, a note saying so.

    Args:
        model: The model.
        data_spec: The data's own input spec (``None``: no data).
        overrides: What the user gave.

    Returns:
        ``(spec, note)``: the model's recorded spec and no note; or for a model
        without one, the data's spec with the overrides applied and a note.

    Raises:
        FisherlabError: If overrides contradict the spec the model records.
    """
    overrides = overrides or InputOverrides()
    recorded = model_meta(model).input_spec
    if recorded is not None:
        if overrides.given() and overrides.apply(recorded) != recorded:
            raise FisherlabError(
                f"the model records its input ({describe_input_spec(recorded)}); "
                "--input-size/--channels/--mean/--std apply only to models that record none"
            )
        return recorded, None
    spec = overrides.apply(data_spec)
    if spec is None:
        return None, None
    source = "the data's default" if not overrides.given() else "as given"
    note = (
        f"the model records no preprocessing; assuming {describe_input_spec(spec)} ({source}; "
        "set --input-size/--channels/--mean/--std, or record it with `fisherlab import`)"
    )
    return spec, note


def looks_like_a_path(text: str) -> bool:
    """Whether ``text`` is meant as a file (a separator or a model-file suffix), not a spec."""
    suffixes = (".pt", ".pth", ".pt2", ".ckpt")
    return any(sep in text for sep in ("/", "\\")) or text.endswith(suffixes)


def open_model(
    source: nn.Module | str | Path,
    *,
    weights: str | Path | None = None,
    model_kwargs: dict | None = None,
    num_classes: int | None = None,
    input_spec: InputSpec | None = None,
    trust_pickle: bool = False,
) -> nn.Module:
    """The model that ``source`` names (module docs), in eval mode.

    Args:
        source: An ``nn.Module``, a model file, or a model spec such as
            ``"torchvision:resnet18"`` or ``"mypackage.nets:make_cnn"``.
        weights: A state dict file for a spec (read with ``weights_only=True``).
        model_kwargs: Arguments of the spec's builder or factory.
        num_classes: Outputs of a spec-built model (default: read from
            ``weights``).
        input_spec: The input a spec-built model takes (its channels and
            side build the model) and, for any model that records none, the
            preprocessing recorded on it.
        trust_pickle: Allow pickles, TorchScript and checkpoints that name user
            code (all run code from or named by a file).

    Returns:
        The model, with ``model.fisherlab_meta``.

    Raises:
        FisherlabError: For a missing file, an unknown spec, weights that do
            not fit, or ``weights`` with a file.

    Example:
        >>> m = open_model("torchvision:resnet18", num_classes=3,
        ...                input_spec=InputSpec(1, 32, None, None))
        >>> m.conv1.in_channels, m.fc.out_features, str(model_meta(m).arch)
        (1, 3, 'torchvision:resnet18')
    """
    if isinstance(source, nn.Module):
        if weights is not None:
            load_weights(source, read_weights(weights), str(weights))
        model = source
    else:
        text = str(source)
        path = Path(text)
        if path.is_file():
            if weights is not None or model_kwargs:
                raise FisherlabError(
                    f"{text} is a model file: --weights and --model-kwargs go with a model "
                    "spec (e.g. torchvision:resnet18 --weights FILE)"
                )
            model = load_model(path, trust_pickle=trust_pickle)
        elif text not in ARCHITECTURES and looks_like_a_path(text):
            raise FisherlabError(
                f"model file {text} does not exist (a model is a checkpoint file or a spec "
                "such as torchvision:resnet18)"
            )
        else:
            model = _from_spec(text, weights, model_kwargs, num_classes, input_spec)
    if input_spec is not None and model_meta(model).input_spec is None:
        meta = model_meta(model)
        if not isinstance(getattr(model, "fisherlab_meta", None), ModelMeta):
            model.fisherlab_meta = meta
        meta.input_spec = input_spec
    return model.eval()


def _from_spec(
    text: str,
    weights: str | Path | None,
    model_kwargs: dict | None,
    num_classes: int | None,
    input_spec: InputSpec | None,
) -> nn.Module:
    spec = parse_model_spec(text)
    state = read_weights(weights) if weights is not None else None
    inferred = infer_shape_arguments(spec, state, model_kwargs) if state is not None else {}
    classes = num_classes if num_classes is not None else inferred.get("num_classes")
    if num_classes is not None and inferred.get("num_classes", num_classes) != num_classes:
        raise FisherlabError(
            f"{weights} holds a head of {inferred['num_classes']} classes but the model "
            f"should have {num_classes} (the data's or --classes): use weights of a model for "
            "these classes"
        )
    channels = inferred.get("in_channels", 3)
    if input_spec is not None:
        if "in_channels" in inferred and inferred["in_channels"] != input_spec.channels:
            raise FisherlabError(
                f"{weights} is for {inferred['in_channels']}-channel input but the input has "
                f"{input_spec.channels} channels: pass --channels {inferred['in_channels']}"
            )
        channels = input_spec.channels
    if spec.kind == "fisherlab":
        size = input_spec.size if input_spec else ARCHITECTURES[spec.name].default_image_size
    else:
        size = input_spec.size if input_spec else 64
    if classes is None and spec.kind != "code":
        told = f" ({weights} does not say: are they weights of {text}?)" if weights else ""
        raise FisherlabError(f"{text}: how many classes? give --classes{told}")
    model = build_from_spec(
        spec, classes, channels, size, model_kwargs=model_kwargs, trust_code=True
    )
    if state is not None:
        load_weights(model, state, str(weights))
    return model

"""Typed configuration: one dataclass per concern, composed into `ExperimentConfig`.

Every run and every checkpoint stores the resolved `ExperimentConfig` as JSON
(`to_dict`), so a checkpoint is self-describing and `from_dict` rebuilds it.
Overrides from the command line use dotted paths: `train.lr_g=2e-4`,
`generator.ch_mult=1,2,2`.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field, fields

from .errors import ConfigError

BandOrder = typing.Literal["pywt", "dwt2d"]


@dataclass
class GeneratorConfig:
    """NCSN++ generator (`net_type="normal"`) or its wavelet variant (`"wavelet"`).

    `resolution` is the spatial size of the tensor the network sees (half the
    image size in wavelet space, before patchify).
    """

    net_type: str = "wavelet"  # "wavelet" | "normal"
    in_channels: int = 12  # 12 in wavelet space, 3 in pixel space
    resolution: int = 16
    patch_size: int = 1
    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.0
    resamp_with_conv: bool = True
    conditional: bool = True
    fir: bool = True
    fir_kernel: tuple[int, ...] = (1, 3, 3, 1)
    skip_rescale: bool = True
    resblock_type: str = "biggan"
    progressive: str = "none"
    progressive_input: str = "residual"
    progressive_combine: str = "sum"
    embedding_type: str = "positional"
    fourier_scale: float = 16.0
    use_tanh: bool = True
    centered: bool = True
    nz: int = 100
    z_emb_dim: int = 256
    n_mlp: int = 3
    # The paper's three wavelet components (ablations switch them off).
    use_freq: bool = True  # frequency-aware down/up blocks
    use_fbn: bool = True  # frequency bottleneck
    use_residual: bool = True  # wavelet input pyramid
    # Band order of the data the weights were trained on. Our own models use
    # "pywt" (canonical); converted checkpoints trained with the authors' DWT_2D
    # backend use "dwt2d" and are adapted at the module boundary.
    band_order: str = "pywt"


@dataclass
class DiscriminatorConfig:
    kind: str = "small"  # "small" (cifar10, stl10) | "large"
    in_channels: int = 12  # channels of ONE image; D sees x_t and x_{t+1} concatenated
    ngf: int = 64
    t_emb_dim: int = 256
    num_layers: int = 3
    patch_size: int = 1
    band_order: str = "pywt"  # as GeneratorConfig.band_order


@dataclass
class DiffusionConfig:
    num_timesteps: int = 4
    beta_min: float = 0.1
    beta_max: float = 20.0
    use_geometric: bool = False


@dataclass
class DataConfig:
    dataset: str = "folder"  # cifar10 | stl10 | lsun | celeba_256 | celeba_512 | celeba_1024 | folder | digits
    path: str = ""
    image_size: int = 32
    hflip: bool = True
    num_workers: int = 4
    persistent_workers: bool = True  # keep DataLoader workers alive between epochs (num_workers > 0)
    max_images: int = 0  # 0 = all


@dataclass
class TrainConfig:
    batch_size: int = 64  # per process
    num_epoch: int = 1200
    steps: int = 0  # 0 = run num_epoch epochs
    max_minutes: float = 0.0  # > 0: stop (and export) once this much wall time has passed
    lr_g: float = 1.6e-4
    lr_d: float = 1.25e-4
    beta1: float = 0.5
    beta2: float = 0.9
    lr_decay: bool = True  # cosine decay to 1e-5, stepped once per epoch
    use_ema: bool = True
    ema_decay: float = 0.9999
    ema_rampup: float = 0.0  # >0: EDM-style warm-up, decay = min(ema_decay, ...) (0 = paper)
    r1_gamma: float = 0.05
    lazy_reg: int = 1
    rec_loss: bool = True
    rec_weight: float = 1.0  # weight of the L1 reconstruction loss against the adversarial loss (1 = the authors)
    # Relative frequency of each diffusion step t = 0..T-1 in the training pairs (empty = uniform, the paper).
    t_weights: tuple[float, ...] = ()
    precision: str = "fp32"  # fp32 | bf16
    compile: bool = False
    # replay each training iteration from a CUDA graph (one CUDA process; training/graphs.py): for small batches,
    # where the GPU waits for kernel launches
    cuda_graphs: bool = False
    seed: int = 1024
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 50
    sample_every: int = 1000
    # Metrics during training (training/metrics.py): every `metrics_every` steps (0 = never) the FID of
    # `metrics_n` EMA samples (0 = 500 for digits, 5000 with Inception) against `fid_ref` statistics
    # (Inception, weights from `inception_weights` or the torch hub cache); digits need neither.
    metrics_every: int = 0
    metrics_n: int = 0
    fid_ref: str = ""
    inception_weights: str = ""
    gpus: int = 1  # number of GPUs the paper used (documentation; torchrun decides)


@dataclass
class ExperimentConfig:
    """Everything one experiment needs: image size and space, the networks, the diffusion schedule, the data and the
    training settings. Presets (`wavediff.get_preset`) are instances of it; `override({"train.lr_g": 2e-4})` returns
    a changed copy; every run and checkpoint stores it (`to_json`), so `from_dict` rebuilds it."""

    name: str = "custom"
    space: str = "wavelet"  # "wavelet" | "pixel"
    image_size: int = 32
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def data_channels(self) -> int:
        return 12 if self.space == "wavelet" else 3

    @property
    def data_resolution(self) -> int:
        """Spatial size of the diffusion state (half the image in wavelet space)."""
        return self.image_size // 2 if self.space == "wavelet" else self.image_size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict) -> ExperimentConfig:
        return _from_dict(cls, d, "")

    def override(self, assignments: list[str] | dict) -> ExperimentConfig:
        """Return a copy with dotted-path overrides applied (`train.lr_g=2e-4`)."""
        d = self.to_dict()
        items = assignments.items() if isinstance(assignments, dict) else (_split(a) for a in assignments)
        for key, value in items:
            _assign(d, key, value)
        return ExperimentConfig.from_dict(d)


def _split(assignment: str) -> tuple[str, str]:
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} has no '='; write it as section.field=value, e.g. train.lr_g=2e-4")
    key, value = assignment.split("=", 1)
    return key.strip(), value.strip()


def _assign(d: dict, key: str, value) -> None:
    parts = key.split(".")
    node = d
    for i, p in enumerate(parts[:-1]):
        if not isinstance(node.get(p), dict):
            raise ConfigError(
                f"unknown config section {'.'.join(parts[: i + 1])!r} in override {key!r}; "
                f"sections are: {', '.join(k for k, v in node.items() if isinstance(v, dict))}"
            )
        node = node[p]
    leaf = parts[-1]
    if leaf not in node:
        raise ConfigError(f"unknown config field {key!r}; fields here are: {', '.join(node)}")
    if isinstance(node[leaf], dict):
        raise ConfigError(
            f"{key!r} is a config section, not a field; set one of its fields, e.g. {key}.{next(iter(node[leaf]))}=..."
        )
    node[leaf] = _coerce(value, node[leaf], key) if isinstance(value, str) else value


def _coerce(text: str, current, key: str):
    try:
        if isinstance(current, bool):
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, (list, tuple)):
            items = [s for s in text.replace(" ", ",").split(",") if s]
            kind = type(current[0]) if current else _number
            return [kind(s) for s in items]
    except ValueError:
        raise ConfigError(f"bad value {text!r} for {key} (expected {type(current).__name__})") from None
    return text


def _number(text: str) -> int | float:
    """An int where the text is one, else a float (items of a list whose default is empty)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _from_dict(cls, d, prefix: str):
    if not isinstance(d, dict):
        raise ConfigError(f"config section {prefix or '<root>'} must be a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(
            f"unknown config field(s) {sorted(unknown)} in section {prefix or '<root>'}; known: {sorted(known)}"
        )
    kwargs = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            v = _from_dict(hint, v, f"{prefix}{f.name}.")
        else:
            v = _typed(v, hint, f"{prefix}{f.name}")
        kwargs[f.name] = v
    return cls(**kwargs)


# Fields that must be whole numbers >= 1 (a network, a schedule or a batch cannot be built from less).
POSITIVE = {
    "image_size",
    "generator.in_channels",
    "generator.resolution",
    "generator.patch_size",
    "generator.nf",
    "generator.nz",
    "generator.z_emb_dim",
    "generator.n_mlp",
    "discriminator.in_channels",
    "discriminator.ngf",
    "discriminator.t_emb_dim",
    "diffusion.num_timesteps",
    "data.image_size",
    "train.batch_size",
}


def _typed(v, hint, key: str):
    """`v` as the field's type (an int is a float too; a list a tuple), or a one-line ConfigError naming the field."""
    if typing.get_origin(hint) is tuple:
        if not isinstance(v, (list, tuple)):
            raise ConfigError(f"config field {key} must be a list, got {type(v).__name__} {v!r}")
        kind = typing.get_args(hint)[0]
        return tuple(_typed(x, kind, key) for x in v)
    if hint is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"config field {key} must be a number, got {type(v).__name__} {v!r}")
        return float(v)
    if hint is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"config field {key} must be a whole number, got {type(v).__name__} {v!r}")
        if key in POSITIVE and v < 1:
            raise ConfigError(f"{key}={v} is too small: it must be at least 1")
        return v
    if hint in (bool, str) and not isinstance(v, hint):
        raise ConfigError(f"config field {key} must be a {hint.__name__}, got {type(v).__name__} {v!r}")
    return v

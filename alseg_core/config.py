"""params.yaml -> one frozen, validated :class:`Config`.

Unknown sections or keys, wrong types and bad values are errors that name the file
and the key. Command-line options override single keys (``train.epochs=3``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from alseg_core import storage
from alseg_core.datasets.synthetic import SyntheticSpec
from alseg_core.executors import parse_executor
from alseg_core.params_lines import EMPTY_VALUES, header, section_starts
from alseg_core.superpixels import SuperpixelParams, SuperpixelStore
from alseg_core.training_spec import TrainConfig

__all__ = ["Config", "TrainConfig", "load_config", "config_from_dict", "add_round"]


@dataclass(frozen=True)
class DataConfig:
    root: str = "data/synthetic"
    pool_split: str = "train"
    val_split: str = "val"


@dataclass(frozen=True)
class SuperpixelConfig:
    method: str = "watershed"
    n_regions: int = 100
    compactness: float = 0.01  # suits the embedded 128x256 data; 1e-3 at 1024x2048
    store: str = "data/superpixels"
    workers: int = 0  # 0 = all cores

    def params(self) -> SuperpixelParams:
        return SuperpixelParams(self.method, self.n_regions, self.compactness)

    def open_store(self) -> SuperpixelStore:
        """The Parquet store at ``store`` for these parameters."""
        return SuperpixelStore(self.store, self.params())

    def __post_init__(self) -> None:
        self.params()  # validates
        if self.workers < 0:
            raise ValueError(f"superpixels.workers must be >= 0, got {self.workers}")


@dataclass(frozen=True)
class ModelConfig:
    # LR-ASPP: the CPU default (~4x DRN-D-22's training speed); drn_d_22: the reference's.
    name: str = "lraspp_mobilenet_v3_large"
    dropout: float = 0.5
    num_classes: int = 19
    pretrained: str | None = None  # weights to start from (path/URL; models/pretrained.py)

    def __post_init__(self) -> None:
        from alseg_core.models.registry import MODEL_REGISTRY

        if self.name not in MODEL_REGISTRY:
            raise ValueError(
                f"model.name: unknown model {self.name!r}; known: {sorted(MODEL_REGISTRY)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class ComputeConfig:
    """Where superpixels, score and predict run (:mod:`alseg_core.executors`;
    ``ALSEG_EXECUTOR`` wins), in shards of ``shard_size`` images; ``threads``: torch CPU
    threads per scoring shard wherever it runs (0 = this process's): executors give the
    same bytes at equal ``threads``."""

    executor: str = "local"
    shard_size: int = 64
    threads: int = 0

    def __post_init__(self) -> None:
        parse_executor(self.executor)
        if self.shard_size < 1 or self.threads < 0:
            raise ValueError(f"compute.shard_size must be >= 1 and compute.threads >= 0, got "
                             f"{self.shard_size} and {self.threads}")  # fmt: skip


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"eval.batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class ALConfig:
    """The active-learning experiment; budgets are in annotation cost units (instances)."""

    unit: str = "superpixel"  # or "image"
    strategy: str = "mc_variance"  # a registered strategy (alseg run --help lists them)
    rounds: int = 4  # acquisition rounds after the random seed round
    initial_images: int = 20  # the random seed set: whole images, the same for every strategy
    budget_per_round: int = 400
    mc_passes: int = 10
    # MC statistics where dropout acts (the head's resolution; "full": every pass at the
    # image size), and at most this many pixels per trunk pass (bounds scoring memory
    # whatever eval.batch_size: one 1024x2048 image by default).
    score_resolution: str = "feature"
    score_batch_pixels: int = 2048 * 1024
    train_steps: int = 200  # optimiser steps per round (epochs follow from the labelled set size)
    train_epochs: int = 0  # and at least this many epochs over its labelled images (0: off)
    finetune: bool = True  # start each round from the previous round's weights
    # Then up to plateau_chunks more chunks as long as the first, until plateau_patience
    # chunks in a row gain < plateau_tol over the best before them.
    plateau_chunks: int = 0
    plateau_tol: float = 0.005
    plateau_patience: int = 1
    # Then self-training (0: off; pipeline.steps.train.SelfTraining), at most pseudo_chunks.
    pseudo_threshold: float = 0.0
    pseudo_chunks: int = 2
    # Seed round: random images (initial_images), or seed_budget random superpixels.
    seed_unit: str = "image"
    seed_budget: int = 0
    seed: int = 0
    heat_stride: int = 4
    out: str = "data/runs/al"
    annotator: str = "oracle"  # or "human": labels come from a delivery folder
    label_format: str = "train_ids"  # human deliveries: train_ids or label_ids
    export: str = "data/exports"  # where requests for humans go (path or s3:// URL)
    # Human rounds: the tool files beside request.csv, and the URL prefix the tool finds
    # the images under (None: their own URLs).
    export_formats: tuple[str, ...] = ("label-studio", "cvat")
    image_url_prefix: str | None = None

    def __post_init__(self) -> None:
        from alseg_core.active.strategies import check_strategy

        check_strategy(self.strategy, self.unit)
        for name in ("rounds", "initial_images", "train_steps", "heat_stride", "plateau_patience"):
            if getattr(self, name) < 1 and not (name == "rounds" and self.rounds == 0):
                raise ValueError(f"al.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_epochs", "pseudo_chunks", "budget_per_round", "plateau_chunks",
                     "plateau_tol"):  # fmt: skip
            if not getattr(self, name) >= 0:  # NaN too
                raise ValueError(f"al.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.pseudo_threshold <= 1:
            raise ValueError(f"al.pseudo_threshold must be in [0, 1], got {self.pseudo_threshold}")
        for key, allowed in (("seed_unit", ("image", "superpixel")),
                             ("annotator", ("oracle", "human")),
                             ("label_format", ("train_ids", "label_ids")),
                             ("score_resolution", ("feature", "full"))):  # fmt: skip
            if getattr(self, key) not in allowed:
                raise ValueError(f"al.{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.seed_unit == "superpixel" and self.seed_budget < 1:
            raise ValueError(f"al.seed_unit 'superpixel' needs al.seed_budget >= 1, got "
                             f"{self.seed_budget}")  # fmt: skip
        if self.mc_passes < 1:
            raise ValueError(f"al.mc_passes (D) must be >= 1, got {self.mc_passes}")
        if self.score_batch_pixels < 1:
            raise ValueError(f"al.score_batch_pixels must be >= 1, got {self.score_batch_pixels}")
        known = ("label-studio", "cvat", "coco")
        for fmt in self.export_formats:
            if fmt not in known:
                raise ValueError(f"al.export_formats: unknown format {fmt!r}; expected {known}")


@dataclass(frozen=True)
class RoundSpec:
    """One pipeline round; ``prev`` names the round whose labelled set it starts from."""

    k: int
    prev: int


def round_name(k: int) -> str:
    return f"r{k}"


def _round_number(name: Any, where: str) -> int:
    if not isinstance(name, str) or not name.startswith("r") or not name[1:].isdigit():
        raise ValueError(f"{where}: round names are r<k> (r0 is the seed round), got {name!r}")
    return int(name[1:])


def _build_rounds(values: Any, source: str) -> tuple[RoundSpec, ...]:
    """``rounds: {r1: {prev: r0}, r2: {prev: r1}}`` -> RoundSpecs, each after its previous."""
    if values is None:
        return ()
    if not isinstance(values, dict):
        raise ValueError(f"{source}: 'rounds' must map r<k> to {{prev: r<j>}}, got {values!r}")
    rounds: list[RoundSpec] = []
    known = {0}  # r0 is the random seed round
    for name, entry in values.items():
        k = _round_number(name, f"{source}: rounds")
        if not isinstance(entry, dict) or set(entry) != {"prev"}:
            raise ValueError(f"{source}: rounds.{name} must be {{prev: r<j>}}, got {entry!r}")
        prev = _round_number(entry["prev"], f"{source}: rounds.{name}.prev")
        if k < 1 or k in known:
            raise ValueError(f"{source}: rounds.{name}: round numbers must be new and >= 1")
        if prev not in known:
            raise ValueError(
                f"{source}: rounds.{name} names previous round r{prev}, which is not listed "
                "before it (r0 is the seed round)"
            )
        known.add(k)
        rounds.append(RoundSpec(k, prev))
    return tuple(rounds)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)
    superpixels: SuperpixelConfig = field(default_factory=SuperpixelConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    al: ALConfig = field(default_factory=ALConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    rounds: tuple[RoundSpec, ...] = ()  # the pipeline's rounds after the seed round (dvc.yaml)

    def previous_round(self, k: int) -> int | None:
        """The round ``k`` starts from (``rounds``); None for the seed round r0."""
        if k == 0:
            return None
        for spec in self.rounds:
            if spec.k == k:
                return spec.prev
        listed = ", ".join(f"r{r.k}" for r in self.rounds) or "none"
        raise ValueError(f"rounds: round r{k} is not listed (listed: {listed}); `alseg round add`")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    hints = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    if hints:  # X | None
        if value is None and type(None) in hints:
            return None
        annotation = next(h for h in hints if h is not type(None))
    origin = typing.get_origin(annotation)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        inner = typing.get_args(annotation)
        if len(inner) == 2 and inner[1] is Ellipsis:
            return tuple(_coerce(v, inner[0], where) for v in value)
        if len(inner) != len(value):
            raise ValueError(f"{where}: expected {len(inner)} values, got {value!r}")
        return tuple(_coerce(v, t, where) for v, t in zip(value, inner, strict=True))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _build_section(cls: type, values: Any, section: str, source: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"{source}: section {section!r} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ValueError(
                f"{source}: unknown key '{section}.{key}' (known keys: {', '.join(sorted(fields))})"
            )
        kwargs[key] = _coerce(value, hints[key], f"{source}: {section}.{key}")
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err


def config_from_dict(raw: Any, *, source: str = "params") -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(
            f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}"
        )
    sections = {f.name: f for f in dataclasses.fields(Config)}
    hints = typing.get_type_hints(Config)
    built = {}
    for name, value in raw.items():
        if name not in sections:
            known = ", ".join(sorted(sections))
            raise ValueError(f"{source}: unknown section {name!r} (known sections: {known})")
        if name == "rounds":
            built[name] = _build_rounds(value, source)
            continue
        built[name] = _build_section(hints[name], value, name, source)
    return Config(**built)


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML keeps the last)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ValueError(
                f"{loader.source}: key {key!r} appears twice in one mapping (lines "
                f"{seen[key]} and {line}); YAML would silently keep only the second"
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def strict_yaml_load(text: str, *, source: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys, naming ``source`` and the lines."""
    loader = _StrictLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_config(path: str | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read params.yaml (``path`` None = defaults only) and apply ``section.key`` overrides."""
    raw: dict[str, Any] = {}
    source = path or "defaults"
    if path is not None:
        if not storage.exists(path):
            raise FileNotFoundError(f"{path}: params file not found")
        text = storage.read_text(path)
        try:
            raw = strict_yaml_load(text, source=path)
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML ({err})") from err
        if raw is None:
            raise ValueError(f"{path}: params file is empty")
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        sec = raw.setdefault(section, {}) or {}
        raw[section] = {**sec, key: value}
    return config_from_dict(raw, source=source)


def add_round(path: str) -> RoundSpec:
    """Append the next round to params.yaml's ``rounds`` list, keeping comments intact.

    The ``rounds`` list must be the file's last top-level section (it is created there if
    missing). Returns the new round; the file is rewritten atomically and re-validated.
    """
    cfg = load_config(path)
    last = max((r.k for r in cfg.rounds), default=0)
    new = RoundSpec(last + 1, last)
    text = storage.read_text(path)
    lines = text.rstrip("\n").split("\n")
    top_level = section_starts(lines)
    rounds_at = [i for i in top_level if header(lines[i])[0] == "rounds"]
    if rounds_at and rounds_at[0] != top_level[-1]:
        raise ValueError(f"{path}: 'rounds' must be the last section to add rounds automatically")
    if not rounds_at:
        lines.append("rounds:  # round -> its previous round; `alseg round add` extends it")
    elif (value := header(lines[rounds_at[0]])[1]) and value in EMPTY_VALUES:
        lines[rounds_at[0]] = "rounds:"  # "rounds: {}" / null / ~ takes a block of rounds
    lines.append(f"  {round_name(new.k)}: {{prev: {round_name(new.prev)}}}")
    new_text = "\n".join(lines) + "\n"
    config_from_dict(
        strict_yaml_load(new_text, source=path), source=path
    )  # validate before writing
    storage.write_bytes(path, new_text.encode())
    return new

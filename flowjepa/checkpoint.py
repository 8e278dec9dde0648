"""Atomic, pickle-free storage of weights, configs and training state.

Every file is written to a temporary name in the destination folder, flushed,
fsynced and renamed over the target, so a killed write never leaves a file
that loads as valid. Tensors go into safetensors files; everything else
(nested dicts, lists, numbers, strings) goes into JSON. Nothing is unpickled.

A training checkpoint is one safetensors file whose metadata contains the JSON
skeleton of an arbitrary nested state (model, optimiser, scheduler, RNG
states, step). Each tensor in the skeleton is replaced by a reference to a
named tensor in the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from flowjepa.errors import InvalidInputError

_TENSOR_KEY = "__tensor__"
_TUPLE_KEY = "__tuple__"
_STATE_KEY = "flowjepa_state"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file as 0600; give it the usual permissions of a new file under the umask.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read a JSON file, raising :class:`InvalidInputError` when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{what} {path} is not valid JSON ({error}); re-create it") from error


def _flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().contiguous()
        return {_TENSOR_KEY: name}
    if isinstance(obj, dict):
        for key in obj:
            if not isinstance(key, (str, int)):
                raise TypeError(f"state keys must be str or int, got {type(key).__name__}")
        # JSON turns int keys into strings, so remember which keys were ints.
        return {
            "__dict__": [[key, _flatten(value, tensors)] for key, value in obj.items()],
        }
    if isinstance(obj, tuple):
        return {_TUPLE_KEY: [_flatten(value, tensors) for value in obj]}
    if isinstance(obj, list):
        return [_flatten(value, tensors) for value in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a value of type {type(obj).__name__} in a checkpoint")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR_KEY in obj:
            return tensors[obj[_TENSOR_KEY]]
        if _TUPLE_KEY in obj:
            return tuple(_unflatten(value, tensors) for value in obj[_TUPLE_KEY])
        return {key: _unflatten(value, tensors) for key, value in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(value, tensors) for value in obj]
    return obj


def save_state(path: str | os.PathLike, state: Any) -> None:
    """Store a nested state (dicts, lists, tuples, tensors, scalars) in one safetensors file, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, tensors)
    data = save_safetensors_bytes(tensors, metadata={_STATE_KEY: json.dumps(skeleton)})
    atomic_write_bytes(path, data)


def load_state(path: str | os.PathLike) -> Any:
    """Load a state written by :func:`save_state`; a missing, truncated or foreign file is an ``InvalidInputError``."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    try:
        tensors = load_safetensors_bytes(data)
        metadata = _read_metadata(data)
    except (SafetensorError, ValueError, json.JSONDecodeError) as error:
        raise InvalidInputError(
            f"checkpoint {path} is not a valid safetensors file ({error}); "
            "it may be truncated or not a flowjepa checkpoint: delete it and resume from an earlier one"
        ) from error
    if _STATE_KEY not in metadata:
        raise InvalidInputError(f"checkpoint {path} has no flowjepa training state; it was not written by flowjepa")
    return _unflatten(json.loads(metadata[_STATE_KEY]), tensors)


def _read_metadata(data: bytes) -> dict[str, str]:
    # The safetensors header is an 8-byte little-endian length followed by JSON.
    if len(data) < 8:
        raise ValueError("file shorter than the safetensors header")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise ValueError("header length exceeds the file size")
    header = json.loads(data[8 : 8 + header_len])
    return header.get("__metadata__", {}) or {}


def save_weights(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> None:
    """Store a flat ``name -> tensor`` dict (a ``state_dict``) as safetensors, atomically."""
    clean = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    atomic_write_bytes(path, save_safetensors_bytes(clean))


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a flat safetensors file; a missing or corrupt file is an ``InvalidInputError``."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"weights file not found: {path}")
    try:
        return load_safetensors_bytes(path.read_bytes())
    except (SafetensorError, ValueError) as error:
        raise InvalidInputError(
            f"weights file {path} is not a valid safetensors file ({error}); "
            "it may be truncated or in another format (flowjepa never unpickles .pt/.pkl files)"
        ) from error


def load_module_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into ``module``; missing, unexpected or mis-shaped entries are an ``InvalidInputError``."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{name}: file {tuple(tensors[name].shape)} vs config {tuple(expected[name].shape)}"
        for name in expected
        if name in tensors and tensors[name].shape != expected[name].shape
    ]
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if mismatched:
            details.append(f"shape mismatch {mismatched[:3]}{' ...' if len(mismatched) > 3 else ''}")
        raise InvalidInputError(
            f"weights in {source} do not match the config saved beside them ({'; '.join(details)}); "
            "the folder mixes files from different models: re-export it with save_pretrained"
        )
    module.load_state_dict(tensors, strict=True)

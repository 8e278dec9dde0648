"""Pretraining data sources: layouts, unreadable files, seeded batches and determinism."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from flowjepa import InvalidInputError
from flowjepa.data import MultiViewDataset, StepBatchSampler, ViewSpec, collate, open_source
from flowjepa.train import pretrain
from tests.test_pretrain_cli import tiny_config


def test_unreadable_image_is_skipped_and_counted(small_image_folder, tmp_path, caplog):
    root = tmp_path / "images"
    shutil.copytree(small_image_folder, root)
    broken = sorted((root / "train").iterdir())[0] / "broken.jpg"
    broken.write_bytes(b"not an image at all")

    dataset = open_source("folder", root)
    index = [path for path, _ in dataset.samples].index(broken)
    image, _ = dataset[index]

    assert image.dtype == torch.uint8
    assert image.shape[0] == 3
    assert dataset.skipped == 1
    assert "skipping unreadable image" in caplog.text


def test_folder_without_images_names_layout(tmp_path):
    (tmp_path / "train" / "empty_class").mkdir(parents=True)
    with pytest.raises(InvalidInputError, match="class folders"):
        open_source("folder", tmp_path)


def test_missing_imagenette_suggests_download(tmp_path):
    with pytest.raises(InvalidInputError, match="--download"):
        open_source("imagenette", tmp_path / "nothing")


def test_batches_depend_only_on_seed_and_step(small_image_folder):
    dataset = MultiViewDataset(open_source("folder", small_image_folder), ViewSpec(16, 2), "label")
    run = iter(StepBatchSampler(len(dataset), 4, seed=3))
    batches = [next(run) for _ in range(6)]
    resumed = iter(StepBatchSampler(len(dataset), 4, seed=3, start_step=4))

    assert next(resumed) == batches[4]
    assert torch.equal(collate([dataset[i] for i in batches[2]])["views"],
                       collate([dataset[i] for i in batches[2]])["views"])  # fmt: skip
    other_seed = iter(StepBatchSampler(len(dataset), 4, seed=4))
    assert next(other_seed) != batches[0]


def test_same_seed_gives_same_first_losses(small_image_folder, tmp_path):
    pretrain(tiny_config(small_image_folder, tmp_path / "a", steps=3))
    pretrain(tiny_config(small_image_folder, tmp_path / "b", steps=3))

    rows_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    rows_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    for row_a, row_b in zip(rows_a, rows_b):
        first, second = json.loads(row_a), json.loads(row_b)
        for key in ("train/loss", "train/bpd", "train/invariance", "train/sigreg"):
            assert first[key] == second[key], key

"""Train / validation / test split by sequence (never by frame: frames of a video are correlated)."""

from __future__ import annotations

from pipeline.io import synthia


def split_sequences(names: list[str], val: int, test: int) -> dict[str, list[str]]:
    """Sorted names -> {"train", "val", "test"}: the last ``test`` are test, the ``val`` before them val.

    With too few sequences the held-out splits win (test first, then val) and train may be empty;
    callers that need training data check for that and say so.
    """
    ordered = sorted(names)
    n_test = min(test, len(ordered))
    n_val = min(val, len(ordered) - n_test)
    n_train = len(ordered) - n_test - n_val
    return {"train": ordered[:n_train], "val": ordered[n_train:n_train + n_val], "test": ordered[n_train + n_val:]}


def training_split(raw_root, val: int, test: int) -> dict[str, list[str]]:
    """Split the SYNTHIA-SEQS sequences under ``raw_root``; no training sequence is a params error."""
    return checked_split([s.name for s in synthia.list_sequences(raw_root)], val, test)


def checked_split(names: list[str], val: int, test: int) -> dict[str, list[str]]:
    """:func:`split_sequences` of ``names``; no training sequence is a params error."""
    split = split_sequences(names, val, test)
    if not split["train"]:
        raise ValueError(f"params.yaml: no training sequence left after {val} val + {test} test sequences "
                         f"(data.sequences too small)")
    return split

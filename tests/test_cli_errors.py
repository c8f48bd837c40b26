"""`protoscene` bad arguments and empty inputs: exit 1 and one `error:` line naming the option or folder."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from pipeline.cli import app


def one_error(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    text = result.stderr if result.stderr_bytes else result.output
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1, text
    return errors[0]


def test_validate_empty_folder_is_not_a_pass(tmp_path):
    assert re.search(rf"{re.escape(str(tmp_path))}: no SYNTHIA-SEQS-NN-WEATHER sequence folders",
                     one_error(["validate", str(tmp_path)]))


@pytest.mark.parametrize("pairs", ["0", "-1"])
def test_validate_refuses_no_pairs(generated_root, pairs):
    assert f"--pairs must be >= 1, got {pairs}" in one_error(["validate", str(generated_root), "--pairs", pairs])


def test_validate_nothing_checked_fails(generated_root):
    """A camera that never moves by more than 1 km between frames: no pair checked, so no pass."""
    from pipeline.eval import validate_poses

    with pytest.MonkeyPatch.context() as patch:
        original = validate_poses.validate_sequence
        patch.setattr(validate_poses, "validate_sequence",
                      lambda layout, camera, pairs: original(layout, camera, pairs, min_motion_m=1000.0))
        assert "nothing checked for SYNTHIA-SEQS-01-GENERATED" in one_error(["validate", str(generated_root)])


@pytest.mark.parametrize("args, message", [
    (["--frame-size", "0"], "--frame-size must be a positive multiple of 14, got 0"),
    (["--frame-size", "-14"], "--frame-size must be a positive multiple of 14, got -14"),
    (["--preset", "huge"], "--preset must be one of tiny, 1b, got 'huge'"),
    (["--max-points", "0"], "--max-points >= 1"),
])
def test_visualize_bad_options(tmp_path, args, message):
    video = tmp_path / "clip.webm"
    video.write_bytes(b"")
    assert message in one_error(["visualize", str(video), "--output", str(tmp_path / "viz"), *args])
    assert not (tmp_path / "viz").exists()

"""DP-SGD training interrupted after a checkpoint resumes to the same model and the same ε."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from distillguard.checkpoints import Checkpoint
from distillguard.config import TeacherConfig
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema, Split
from distillguard.train.dp import DPSettings, train_teacher_dp


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("poisson", [True, False])
def test_dp_teacher_resumed_is_bit_identical_with_the_same_accounting(tmp_path: Path, poisson: bool):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    members = Split(X=X, y=(X[:, 0] > 0).astype(np.int64), ids=np.arange(120, dtype=np.int64))
    schema = Schema([f"f{i}" for i in range(6)], [0, 1], (6,))
    cfg = TeacherConfig(hidden=[8], epochs=6, batch_size=32)
    dp = DPSettings(noise_multiplier=1.0, delta=1e-5, accountant="rdp", poisson_sampling=poisson)
    common = dict(schema=schema, cfg=cfg, dp=dp, seed=3, public_scaler=Standardizer.fit(X))
    reference = train_teacher_dp(members, **common)

    checkpoint = Checkpoint(tmp_path / "teacher.pt", name="teacher/teacher", every_seconds=0)

    def stop_at_3(epoch: int) -> None:
        if epoch == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        train_teacher_dp(members, checkpoint=checkpoint, on_epoch=stop_at_3, **common)
    resumed = train_teacher_dp(members, checkpoint=checkpoint, **common)

    assert (resumed.steps, resumed.epsilon, resumed.sample_rate) == (reference.steps, reference.epsilon,
                                                                      reference.sample_rate)
    ref_state = reference.classifier.model.state_dict()
    for key, value in resumed.classifier.model.state_dict().items():
        assert torch.equal(value, ref_state[key]), key

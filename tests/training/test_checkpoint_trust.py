"""The DDP strategy's own checkpoint state is loaded with ``weights_only``: a pickle planted in a run folder on shared
storage is refused, not run on the training nodes at the next resume (DeepSpeed's checkpoints are its own format,
behind the run folder's trust boundary: docs/design.md)."""

from __future__ import annotations

import pickle
import types
from pathlib import Path

import pytest
import torch

from nat_ray.training.strategy import DDPStrategy


class _Planted:
    def __reduce__(self):  # what a crafted checkpoint does: a call at load time
        return (Path.touch, (Path(_MARKER),))


_MARKER = ""


def test_a_pickled_payload_in_a_ddp_checkpoint_is_refused(tmp_path: Path) -> None:
    global _MARKER
    _MARKER = str(tmp_path / "ran")
    with open(tmp_path / "ddp_state.pt", "wb") as f:
        pickle.dump({"model": {}, "step": _Planted()}, f)
    holder = types.SimpleNamespace(device=torch.device("cpu"))
    with pytest.raises(pickle.UnpicklingError):
        DDPStrategy.load(holder, str(tmp_path))  # type: ignore[arg-type]
    assert not (tmp_path / "ran").exists()


def test_the_state_the_ddp_strategy_saves_loads_back(tmp_path: Path) -> None:
    from transformers import get_cosine_schedule_with_warmup

    model = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = get_cosine_schedule_with_warmup(opt, 1, 10)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    sched.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": 7}
    torch.save(state, tmp_path / "ddp_state.pt")  # what DDPStrategy.save writes
    loaded = {}
    holder = types.SimpleNamespace(
        device=torch.device("cpu"),
        module=types.SimpleNamespace(load_state_dict=lambda s: loaded.setdefault("model", s)),
        optimizer=types.SimpleNamespace(load_state_dict=lambda s: loaded.setdefault("optimizer", s)),
        scheduler=types.SimpleNamespace(load_state_dict=lambda s: loaded.setdefault("scheduler", s)),
    )
    assert DDPStrategy.load(holder, str(tmp_path)) == 7  # type: ignore[arg-type]
    assert torch.equal(loaded["model"]["weight"], model.state_dict()["weight"])
    assert loaded["optimizer"]["state"][0]["step"] == opt.state_dict()["state"][0]["step"]

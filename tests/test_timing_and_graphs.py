"""Task 3.2's reading of its timings, and Part B's CUDA-graph section as far as it runs without CUDA: the
graph-ready training step (static buffers, rates from a device table, fused SGD) against Task 1.2's eager loop, the
rates against OneCycleLR's, and the paths that must never break "Run all"."""
import numpy as np
import pytest
import torch


def timings_of(default, own):
    """{batch: {name: per-block times}} as time_networks returns them, from (batch 20, batch 256) means in ms."""
    return {20: {"default": np.array([default[0]]), "own": np.array([own[0]])},
            256: {"default": np.array([default[1]]), "own": np.array([own[1]])}}


def test_a_fixed_cost_per_call_is_named_when_the_batch_costs_little(nb):
    text = nb.describe_batch_scaling(timings_of((0.7, 1.0), (8.55, 10.85)), "own")  # as on an H200
    assert text.splitlines()[0] == "256 images against 20 (12.8x the images):"
    share = nb.fixed_cost_share(8.55, 10.85, 20, 256)
    assert share == pytest.approx(1 - 20 * (10.85 - 8.55) / 236 / 8.55)
    assert f"  own: 1.27x the time; a fixed cost per call makes {share:.0%} of its time at batch 20" in text
    assert "pays mostly per call, not per image" in text and "CUDA graph" in text
    assert f"own / default falls from {8.55 / 0.7:.2f}x to {10.85 / 1.0:.2f}x" in text


def test_passes_over_the_data_are_named_when_the_time_grows_with_the_batch(nb):
    text = nb.describe_batch_scaling(timings_of((0.9, 9.5), (5.3, 46.8)), "own")  # as on the 2-core CPU
    assert "  own: 8.83x the time; a fixed cost per call makes" in text
    assert "time is mostly per image" in text and "per call, not per image" not in text
    assert f"nn.Conv2d makes one pass;\nown / default falls from {5.3 / 0.9:.2f}x to {46.8 / 9.5:.2f}x with the batch" \
        in text


def test_the_fixed_share_stays_in_the_unit_interval(nb):
    assert nb.fixed_cost_share(1.0, 20.0, 20, 256) == 0.0  # grows faster than the images: no fixed part
    assert nb.fixed_cost_share(1.0, 0.9, 20, 256) == 1.0  # noise made the larger batch faster


def test_the_rates_table_is_one_cycle_lr_step_by_step(nb):
    model = nb.ConvNet()
    optimizer = nb.make_optimizer(model, 0.1)
    scheduler = nb.make_scheduler(optimizer, 0.1, 40)
    applied = []
    for _ in range(40):
        applied.append(optimizer.param_groups[0]["lr"])  # the rate the step uses
        optimizer.step()
        scheduler.step()
    rates = nb.one_cycle_rates(0.1, 40, torch.device("cpu"))
    assert rates.dtype == torch.float32 and rates.shape == (40,)
    assert torch.allclose(rates, torch.tensor(applied, dtype=torch.float32))
    assert rates.max() == pytest.approx(0.1) and rates[0] == pytest.approx(0.1 / 25)


def train_both_ways(nb, epochs=2, n=128, batch=32):
    """Task 1.2's eager fit and fit_graphed without capture, from the same seed, on batches that fill every step."""
    torch.manual_seed(0)
    images, labels = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (n,))
    normalize = nb.make_normalize([0.5] * 3, [0.25] * 3)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    found = {}
    for name, fit in (("eager", nb.fit), ("graph-ready", nb.fit_graphed)):
        nb.seed_everything(0)
        model = nb.ConvNet()
        extra = {"capture": False} if name == "graph-ready" else {}
        found[name] = model, fit(model, (images, labels), (images[:32], labels[:32]), normalize, loss_fn, epochs,
                                 batch, 0.05, **extra)
    return found


def test_the_graph_ready_step_trains_as_the_eager_loop(nb):
    """The same batches, augmentations and rates: the same weights up to float rounding (fused SGD adds in
    another order); the parameters stay in the usual layout afterwards."""
    found = train_both_ways(nb)
    (eager, eager_history), (ready, ready_history) = found["eager"], found["graph-ready"]
    for (name, p), q in zip(eager.named_parameters(), ready.parameters()):
        assert torch.allclose(p, q, atol=1e-5), name
        assert q.is_contiguous()
    assert ready_history["train_loss"] == pytest.approx(eager_history["train_loss"], abs=1e-5)
    assert ready_history["val_acc"] == pytest.approx(eager_history["val_acc"], abs=1e-9)
    assert ready_history["steps_per_epoch"] == 4 and len(ready_history["step_seconds"]) == 2


def test_the_graph_ready_step_keeps_its_buffers(nb):
    """Every tensor a replay reads or writes is allocated once: the step changes their values, never the objects."""
    torch.manual_seed(0)
    images, labels = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (64,))
    trainer = nb.GraphReadyTraining(nb.ConvNet(), images, labels, nb.make_normalize([0.5] * 3, [0.25] * 3),
                                    torch.nn.CrossEntropyLoss(), 2, 16, 0.1)
    assert trainer.optimizer.defaults["fused"] and trainer.optimizer.param_groups[0]["lr"] is trainer.lr
    buffers = (trainer.lr, trainer.order, trainer.step_count, trainer.totals)
    trainer.new_epoch()
    for step in range(3):
        trainer.step()
        assert trainer.lr.item() == pytest.approx(trainer.rates[step].item())
    assert (trainer.lr, trainer.order, trainer.step_count, trainer.totals) == buffers  # the same objects
    assert trainer.step_count.item() == 3 and trainer.totals[0] > 0
    assert sorted(trainer.order.flatten().tolist()) == sorted(set(trainer.order.flatten().tolist()))


def test_fit_graphed_needs_more_full_batches_than_warm_up_steps(nb):
    images, labels = torch.zeros(48, 3, 32, 32, dtype=torch.uint8), torch.zeros(48, dtype=torch.long)
    with pytest.raises(ValueError, match="needs more than 3 full batches per epoch, got 3"):
        nb.fit_graphed(nb.ConvNet(), (images, labels), (images, labels), nb.make_normalize([0.5] * 3, [0.25] * 3),
                       torch.nn.CrossEntropyLoss(), 1, 16, 0.1, capture=False)


def test_the_section_skips_on_a_cpu_without_calling_anything(nb, capsys):
    called = []
    assert nb.on_cuda_only(torch.device("cpu"), "the own network as a CUDA graph", lambda: called.append(1)) is None
    assert not called
    assert capsys.readouterr().out == ("the own network as a CUDA graph: needs CUDA, and this run is on the CPU, which "
                                       "launches no kernels to save: skipped\n")


def test_a_failed_capture_is_explained_and_the_notebook_goes_on(nb, capsys):
    def capture():
        raise RuntimeError("operation not permitted when stream is capturing")
    assert nb.on_cuda_only(torch.device("cuda"), "training with the step as a CUDA graph", capture) is None
    out = capsys.readouterr().out
    assert out.startswith("training with the step as a CUDA graph failed (RuntimeError: operation not permitted")
    assert "the eager figures stand, and the rest of the notebook does not depend on this section" in out


def test_profile_on_a_cpu_reports_wall_time_alone(nb, capsys):
    calls = []
    found = nb.profile_calls(lambda: calls.append(1), 3, torch.device("cpu"), steps_per_call=2)
    assert list(found) == ["wall ms"] and found["wall ms"] >= 0 and len(calls) == 6  # a warm-up run, a timed one
    nb.print_profile({"training step, batch 256": {"wall ms": 19.1}, "forward, default, batch 20": {"wall ms": 0.9}},
                     torch.device("cpu"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["wall", "ms"] and lines[2].split()[-1] == "19.100"
    assert lines[-1].startswith("On a CPU each operation runs where Python calls it")

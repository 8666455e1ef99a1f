"""Task 3.2's timing table, and Part B's CUDA-graph section as far as it runs without CUDA: the graph-ready training
step (static buffers, rates from a device table, fused SGD) against Task 1.2's eager loop, the launches counted under
every name the profiler gives them, a capture that fails cleanly, and the paths that must never break "Run all"."""
import contextlib
import types

import numpy as np
import pytest
import torch


def test_the_timing_table_prints_means_and_ratios(nb, capsys):
    timings = {20: {"default": np.array([0.6, 0.8]), "own, Eq. 4 loop": np.array([8.5, 8.6])},
               256: {"default": np.array([1.0, 1.0]), "own, Eq. 4 loop": np.array([10.8, 10.9])}}
    ratios = nb.print_timing_table(timings, torch.device("cpu"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("forward pass on CPU (") and lines[0].endswith(", in ms")
    assert lines[3].split() == ["20", "own,", "Eq.", "4", "loop", "8.550", "0.050", "2", f"{8.55 / 0.7:.2f}x"]
    assert lines[4].split() == ["256", "default", "1.000", "0.000", "2"]
    assert len(lines) == 6  # the header, two lines, one row per batch size and network
    assert ratios == {20: {"default": 1.0, "own, Eq. 4 loop": pytest.approx(8.55 / 0.7)},
                      256: {"default": 1.0, "own, Eq. 4 loop": pytest.approx(10.85)}}


def test_a_single_block_prints_no_spread(nb, capsys):
    """torch.utils.benchmark may measure one block only (a slow network, a short TIMING_SECONDS): no spread is
    printed for it, not a standard deviation of 0.000."""
    nb.print_timing_table({20: {"default": np.array([0.6, 0.8]), "own, Eq. 4 loop": np.array([9.0])}},
                          torch.device("cpu"))
    assert capsys.readouterr().out.splitlines()[-1].split() == ["20", "own,", "Eq.", "4", "loop", "9.000", "–", "1",
                                                                 f"{9 / 0.7:.2f}x"]


def test_forward_times_are_torch_benchmarks_blocks_in_ms(nb):
    times = nb.forward_times_ms(torch.nn.Identity(), torch.zeros(2), 0.01)
    assert times.ndim == 1 and len(times) >= 1 and (times > 0).all() and times.max() < 10


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


def test_the_graphs_normalization_is_part_as_to_the_bit(nb):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    normalize = nb.make_normalize(images)
    assert torch.equal(nb.graph_normalize(normalize, torch.device("cpu"))(images), normalize(images))


def train_both_ways(nb, epochs=2, n=128, batch=32):
    """Task 1.2's eager fit and fit_graphed without capture, from the same seed, on batches that fill every step."""
    torch.manual_seed(0)
    images, labels = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (n,))
    normalize = nb.make_normalize(images)
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
    another order)."""
    found = train_both_ways(nb)
    (eager, eager_history), (ready, ready_history) = found["eager"], found["graph-ready"]
    for (name, p), q in zip(eager.named_parameters(), ready.parameters()):
        assert torch.allclose(p, q, atol=1e-5), name
    assert ready_history["train_loss"] == pytest.approx(eager_history["train_loss"], abs=1e-5)
    assert ready_history["val_acc"] == pytest.approx(eager_history["val_acc"], abs=1e-9)
    assert ready_history["steps_per_epoch"] == 4 and len(ready_history["step_seconds"]) == 2


def test_the_graph_ready_step_keeps_its_buffers(nb):
    """Every tensor a replay reads or writes is allocated once: the step changes their values, never the objects."""
    torch.manual_seed(0)
    images, labels = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (64,))
    trainer = nb.GraphReadyTraining(nb.ConvNet(), images, labels, nb.make_normalize(images),
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
        nb.fit_graphed(nb.ConvNet(), (images, labels), (images, labels), nb.make_normalize(images),
                       torch.nn.CrossEntropyLoss(), 1, 16, 0.1, capture=False)


def test_the_section_skips_on_a_cpu_without_calling_anything(nb, capsys):
    called = []
    assert nb.on_cuda_only(torch.device("cpu"), "the own network as a CUDA graph", lambda: called.append(1)) is None
    assert not called
    assert capsys.readouterr().out == ("the own network as a CUDA graph: needs CUDA, and this run is on the CPU, which "
                                       "launches no kernels to save: skipped\n")


def test_a_failure_prints_its_causes_and_the_notebook_goes_on(nb, capsys):
    def capture():
        try:
            raise RuntimeError("cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing")
        except RuntimeError as err:
            raise RuntimeError("the capture failed") from err
    assert nb.on_cuda_only(torch.device("cuda"), "training with the step as a CUDA graph", capture) is None
    out = capsys.readouterr().out
    assert out.startswith("training with the step as a CUDA graph failed: RuntimeError: the capture failed <- "
                          "RuntimeError: cudaErrorStreamCaptureUnsupported: operation not permitted")
    assert "The eager figures stand, and the rest of the notebook does not depend on this section." in out


def test_launches_are_counted_under_every_name_the_profiler_gives_them(nb):
    """torch 2.11's profiler records runtime-API launches (cudaLaunchKernel, cudaLaunchKernelExC, cudaGraphLaunch) and
    driver-API ones (cuLaunchKernel, cuLaunchKernelEx, which cuBLAS uses on recent GPUs); copies, syncs and the
    kernels themselves are not launches."""
    recorded = {"cudaLaunchKernel": 40, "cudaLaunchKernelExC": 3, "cuLaunchKernel": 5, "cuLaunchKernelEx": 7,
                "cudaGraphLaunch": 2, "cudaMemcpyAsync": 9, "cudaStreamSynchronize": 1, "aten::conv2d": 4,
                "void at::native::vectorized_elementwise_kernel<4, ...>": 40, "cudaLaunchCooperativeKernel": 1}
    events = [types.SimpleNamespace(key=key, count=count) for key, count in recorded.items()]
    assert nb.count_launches(events) == 40 + 3 + 5 + 7 + 2 + 1


class FakeCuda:
    """Just enough of torch.cuda, recorded, to run capture_graph on a CPU: which stream is current, the capture's
    begin and end, the sync debug mode."""

    def __init__(self, fail_at_capture=False, capture_end_error=None):
        self.current, self.calls, self.mode = "default", [], 0
        self.fail_at_capture, self.capture_end_error = fail_at_capture, capture_end_error
        outer = self

        class Graph:
            def capture_begin(self):
                outer.calls.append(("capture_begin", outer.current))
                outer.capturing = True

            def capture_end(self):
                outer.calls.append(("capture_end", outer.current))
                outer.capturing = False
                if outer.capture_end_error:
                    raise RuntimeError(outer.capture_end_error)

        self.CUDAGraph, self.capturing = Graph, False

    def _stream(self, name):
        return types.SimpleNamespace(name=name, wait_stream=lambda other: self.calls.append(("wait", name, other.name)))

    def Stream(self):
        return self._stream("side")

    def current_stream(self):
        return self._stream(self.current)

    @contextlib.contextmanager
    def stream(self, stream):
        before, self.current = self.current, stream.name
        try:
            yield
        finally:
            self.current = before

    def synchronize(self):
        pass

    def get_sync_debug_mode(self):
        return self.mode

    def set_sync_debug_mode(self, mode):
        self.mode = mode
        self.calls.append(("sync_debug_mode", mode))


def test_capture_graph_warms_up_checks_for_syncs_and_captures_on_a_side_stream(nb, monkeypatch):
    fake = FakeCuda()
    monkeypatch.setattr(nb.torch, "cuda", fake)
    runs = []
    graph, output = nb.capture_graph(lambda: runs.append((fake.current, fake.mode, fake.capturing)) or "out", warmup=3)
    assert output == "out" and isinstance(graph, fake.CUDAGraph)
    assert runs == [("side", 0, False), ("side", 0, False), ("side", "error", False), ("side", 0, True)]
    assert ("capture_begin", "side") in fake.calls and ("capture_end", "side") in fake.calls
    assert fake.current == "default" and fake.mode == 0  # both as they were


@pytest.mark.parametrize("end_error", [None, ("cudaErrorStreamCaptureInvalidated: operation failed due to a "
                                              "previous error during capture")])
def test_a_failed_capture_ends_the_capture_restores_the_stream_and_raises_its_real_cause(nb, monkeypatch, end_error):
    """torch.cuda.graph's exit raises in capture_end before it restores the stream, and the real cause hides in
    __context__; capture_graph ends the capture itself, leaves the side stream and raises fn's own error."""
    fake = FakeCuda(capture_end_error=end_error)
    monkeypatch.setattr(nb.torch, "cuda", fake)

    def step():
        if fake.capturing:
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    with pytest.raises(RuntimeError, match="operation not permitted when stream is capturing"):
        nb.capture_graph(step)
    assert fake.calls[-1] == ("capture_end", "side") and not fake.capturing
    assert fake.current == "default"


@pytest.fixture(autouse=True)
def no_failed_captures(nb, monkeypatch):
    """Each test starts in a runtime where no capture has failed."""
    monkeypatch.setattr(nb, "FAILED_CAPTURES", [])


def test_a_synchronization_is_named_in_the_warm_up_before_any_capture(nb, monkeypatch):
    """A warm-up call that raises still leaves the caller's stream waiting for the side stream's queued work."""
    fake = FakeCuda()
    monkeypatch.setattr(nb.torch, "cuda", fake)

    def step():
        if fake.mode == "error":
            raise RuntimeError("called a synchronizing CUDA operation")

    with pytest.raises(RuntimeError, match="synchronizing"):
        nb.capture_graph(step)
    assert not any(call[0] == "capture_begin" for call in fake.calls)
    assert fake.mode == 0 and fake.current == "default"
    assert fake.calls[-1] == ("wait", "default", "side")
    assert nb.FAILED_CAPTURES == []  # a warm-up failure is no failed capture


@pytest.mark.parametrize("version, blocked", [("2.11.0+cu130", True), ("2.12.0", False)])
def test_after_a_failed_capture_old_torch_captures_no_more_and_says_to_restart(nb, monkeypatch, capsys, version,
                                                                              blocked):
    """pytorch#180395, fixed in 2.12: before it, a capture that CUDA invalidated leaves the caching allocator's
    capture state behind. The failure is printed with a restart hint, and later captures are skipped, not tried."""
    fake = FakeCuda(capture_end_error="cudaErrorStreamCaptureInvalidated: operation failed during capture")
    monkeypatch.setattr(nb.torch, "cuda", fake)
    monkeypatch.setattr(nb.torch, "__version__", torch.torch_version.TorchVersion(version))

    def step():
        if fake.capturing:
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    assert nb.on_cuda_only(torch.device("cuda"), "the own network as a CUDA graph",
                           lambda: nb.capture_graph(step)) is None
    out = capsys.readouterr().out
    assert out.startswith("the own network as a CUDA graph failed: RuntimeError: CUDA error: operation not permitted")
    assert nb.FAILED_CAPTURES == ["RuntimeError: CUDA error: operation not permitted when stream is capturing"]
    restart = ("restart the runtime (Runtime ▸ Restart session) before capturing again")
    assert (restart in out) == blocked
    tried = []
    nb.on_cuda_only(torch.device("cuda"), "training with the step as a CUDA graph", lambda: tried.append(1))
    out = capsys.readouterr().out
    assert tried == ([] if blocked else [1])
    if blocked:
        assert out.startswith("training with the step as a CUDA graph: a capture failed earlier in this runtime "
                              "(RuntimeError: CUDA error: operation not permitted when stream is capturing), and torch "
                              f"{version} then keeps the caching allocator's capture state (pytorch#180395, fixed in "
                              "2.12): restart the runtime") and out.rstrip().endswith(": skipped")
        with pytest.raises(RuntimeError, match="a capture failed earlier in this runtime"):
            nb.capture_graph(step)


def test_profile_on_a_cpu_reports_wall_time_alone(nb, capsys):
    calls = []
    found = nb.profile_calls(lambda: calls.append(1), 3, torch.device("cpu"), steps_per_call=2)
    assert list(found) == ["wall ms"] and found["wall ms"] >= 0 and len(calls) == 6  # a warm-up run, a timed one
    nb.print_profile({"training step, batch 256": {"wall ms": 19.1}, "forward, default, batch 20": {"wall ms": 0.9}},
                     torch.device("cpu"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["wall", "ms"] and lines[2].split()[-1] == "19.100"
    assert lines[-1].startswith("On a CPU each operation runs where Python calls it")

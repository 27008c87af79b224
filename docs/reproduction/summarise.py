"""Turn the MNIST studies in results/ into the small committed files (JSON summaries, tables, figures).

    PYTHONPATH=. python docs/reproduction/summarise.py     # after the studies (docs/reproduction.md)

Reads results/mnist5k_mlp, results/mnist5k_cnn, results/ablations and results/ablations_cnn (records.jsonl,
megabytes, not committed) and writes mlp.json, cnn.json, cnn_steps14.json (the CNN at pi in {1, 14}) and
ablations.json (kilobytes) as package data to losstools/pruning/mnist5k/ (``summary.stored_summary`` reads them),
and tables.md and the figures here, beside the site's reproduction page. Tables use only the seeds that ran the
whole grid (``complete_seeds``).
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from losstools import plotting  # noqa: E402
from losstools.pruning import PAPER_REGS, ablations, format_table, load_records  # noqa: E402
from losstools.pruning.summary import complete_seeds, select_runs, summarise, write_summary  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = ROOT / "results"
DATA = ROOT / "losstools" / "pruning" / "mnist5k"   # package data
REGS = PAPER_REGS  # the paper's nine values, for the MLP and the CNN


def study_summary(folder: str, label: str, regs=REGS, steps=None) -> dict | None:
    """Tables and runs of the seeds that ran the whole grid (``regs`` x ``steps``, None: every number of steps)."""
    path = RESULTS / folder
    records = select_runs(load_records(path), regs, steps=steps)
    records = select_runs(records, seeds=complete_seeds(records))
    if not records:
        return None
    settings = json.loads((path / "settings.json").read_text())
    return summarise(records, label, settings)


def figures(summary: dict, prefix: str) -> None:
    runs = summary["runs"]
    plotting.pruning_loss_vs_reg(runs, title=f"ΔL after pruning: {summary['label']}").savefig(
        HERE / f"{prefix}_dL_vs_lambda.png", dpi=100)
    plotting.pruning_outcomes(runs, title=f"{prefix.upper()}: ΔL vs. error after fine-tuning").savefig(
        HERE / f"{prefix}_outcomes.png", dpi=100)
    best = summary["best_qm"]
    if best:
        title = f"QM, {best['steps']} steps, λ = {best['reg']:g} (seed {best['seed']})"
        plotting.predicted_vs_actual(best["history"], title).savefig(HERE / f"{prefix}_predicted_vs_actual.png",
                                                                     dpi=100)
    plt.close("all")


def compared_ablations(prefix: str, baseline: Path, folder: Path) -> dict:
    """Each ablation that has runs in ``folder`` against the same runs of the study in ``baseline``."""
    return {prefix + name: ablations.compare(name, baseline, folder)
            for name in ablations.ABLATIONS if load_records(folder / name)}


def ablation_summary() -> dict:
    baseline = RESULTS / "mnist5k_mlp"
    out = compared_ablations("", baseline, RESULTS / "ablations")
    for name in ("obs_ggn", "obs_kfac"):
        records = load_records(RESULTS / "ablations" / name)
        if records:
            from losstools.pruning import table1

            if name == "obs_kfac":
                records = [{**r, "criterion": "obs-kfac"} for r in records]
            out[name] = {"table": "table1", "variant": table1(records)}
    # the CNN's (only the Fisher variants were run: seeds 0 and 1, lambda = 1e-3)
    out.update(compared_ablations("cnn_", RESULTS / "mnist5k_cnn", RESULTS / "ablations_cnn"))
    mlp = load_records(baseline)
    if mlp:
        out["correlation"] = {
            "spearman_dL_vs_finetuned_val_error": ablations.outcome_correlation(select_runs(mlp, REGS))}
    return out


def ablation_figure(results: dict) -> None:
    names = [n for n in ablations.ABLATIONS if n in results]
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        variant, baseline = results[name]["variant"], results[name]["baseline"]
        criteria = [c for c in ("mp", "obd", "lm", "qm") if c in variant and c in baseline]
        x = range(len(criteria))
        ax.bar([i - 0.2 for i in x], [baseline[c][0] for c in criteria], 0.4, yerr=[baseline[c][1] for c in criteria],
               label="paper protocol")
        ax.bar([i + 0.2 for i in x], [variant[c][0] for c in criteria], 0.4, yerr=[variant[c][1] for c in criteria],
               label=name.replace("_", " "))
        ax.set_xticks(list(x), [c.upper() for c in criteria])
        ax.set_title(name.replace("_", " "))
        ax.set_ylabel("val-error gap (points)" if name == "finetune_long" else "ΔL, best λ at 140 steps")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "ablations.png", dpi=100)
    plt.close(fig)


def main() -> None:
    lines = []
    cnn = "mnist5k LeNet-5-like CNN, κ = 0.956"
    for folder, prefix, label, steps in (("mnist5k_mlp", "mlp", "mnist5k MLP 784-300-100-10, κ = 0.98847", None),
                                         ("mnist5k_cnn", "cnn", cnn, None),
                                         ("mnist5k_cnn", "cnn_steps14", f"{cnn}, π ≤ 14", (1, 14))):
        summary = study_summary(folder, label, REGS, steps)
        if summary is None:
            continue
        write_summary(summary, DATA / f"{prefix}.json")
        if steps is None:
            figures(summary, prefix)
        lines += [f"## {label}", "", f"seeds {summary['seeds']}, steps {summary['steps']}, λ {summary['regs']}", "",
                  format_table(summary["table1"], "table1", label), "",
                  format_table(summary["table2"], "table2", label, digits=1), ""]
    results = ablation_summary()
    (DATA / "ablations.json").write_text(json.dumps(results, indent=1) + "\n")
    ablation_figure(results)
    (HERE / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

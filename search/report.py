"""Run reports: ``pareto.png`` and ``report.md`` (``trials.csv``: :mod:`search.records`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from search.records import TrialRecord

__all__ = ["pareto_front", "plot_pareto", "write_report"]


def pareto_front(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Evaluated records not dominated in (accuracy up, latency down), sorted by latency."""
    pts = sorted((r for r in records if r.evaluated), key=lambda r: (r.latency_ms, -r.acc))
    front, best = [], -1.0
    for r in pts:
        if r.acc > best:
            front.append(r)
            best = r.acc
    return front


def plot_pareto(records: Sequence[TrialRecord], path: Path, *, budget_ms: float, winner: dict | None = None,
                title: str = "", floor_ms: float = 0.0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = [r for r in records if r.evaluated]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    infeasible = "over budget" + (" or under the floor" if floor_ms > 0 else "")
    for feas, color, label in ((True, "tab:blue", "feasible"), (False, "tab:gray", infeasible)):
        pts = [r for r in ev if r.feasible == feas and r.source == "sampled"]
        ax.scatter([r.latency_ms for r in pts], [r.acc for r in pts], s=18, c=color, alpha=0.6, label=label)
    presets = [r for r in ev if r.source != "sampled"]
    ax.scatter([r.latency_ms for r in presets], [r.acc for r in presets], marker="s", s=40, c="tab:orange",
               label="hand-designed presets")
    for r in presets:
        ax.annotate(r.source.replace("shufflenet_", ""), (r.latency_ms, r.acc), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    front = pareto_front(ev)
    ax.plot([r.latency_ms for r in front], [r.acc for r in front], "-", c="tab:blue", lw=1, label="Pareto front")
    ax.axvline(budget_ms, c="tab:red", ls="--", lw=1, label=f"budget {budget_ms:g} ms")
    if floor_ms > 0:
        ax.axvline(floor_ms, c="tab:red", ls=":", lw=1, label=f"search floor {floor_ms:.3g} ms")
    if winner is not None:
        ax.scatter([winner["latency_ms"]], [winner["acc"]], marker="*", s=220, c="tab:red", zorder=5,
                   label=f"exported ({winner['latency_ms']:.2f} ms measured)")
    ax.set_xlabel("latency (ms): predicted, or measured end to end near the budget")
    ax.set_ylabel("validation top-1 (%) with inherited weights")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _code(arch: str) -> str:
    return "`" + arch.replace("|", "\\|") + "`"  # a bare | would split the Markdown table cell


def supernet_line(config: dict[str, Any], update: str = "full") -> str:
    """How the searched supernet was trained, in one phrase (report and console); ``update`` is
    its optimizer update (``supernet.train.resolve_update``)."""
    n = config.get("sandwich", 0)
    return (f"{config['epochs']} epochs, FairNAS fair sampling"
            + (f", BigNAS sandwich rule ({n} sampled paths a step + the largest and smallest, "
               f"distilled from the largest)" if n else ", one path a step")
            + (", path-only optimizer update" if update == "path" else ""))


def write_report(path: Path, *, config: dict[str, Any], winner: dict, baseline: dict | None, n_trials: int,
                 n_rejected: int = 0, update: str = "full", timings: dict[str, float], files: dict[str, str], finetune: list[dict] | None = None) -> None:
    lat = winner["latency"]
    lines = [
        f"# ShuffleNAS run: {config['latency_ms']:g} ms budget",
        "",
        f"- data `{config['data']}`, space `{config['space']}`, input {config['input_size']}x{config['input_size']}, "
        f"device `{lat['env']['device_name']}`, runtime `{lat['env']['runtime']}`, threads {lat['env']['threads']}, "
        f"batch {lat['env']['batch']}, {lat['env']['dtype']}, {lat['env']['memory_format']}, torch {lat['env']['torch']}",
        f"- backend `{config['backend']}`, {n_trials} trials"
        + (f" (and {n_rejected} suggestions rejected: predicted over the budget, drawn again)" if n_rejected else "")
        + f", seed {config['seed']}, objective: "
        + {"accuracy": "top-1 under the budget", "pareto": "top-1 and latency (two objectives)"}.get(
            config.get("objective", "pareto"), str(config.get("objective")))
        + (f", search floor {config.get('min_latency_frac', 0):g} x budget" if config.get("min_latency_frac") else ""),
        f"- supernet: {supernet_line(config, update)}",
        "",
        "| model | arch | top-1 (inherited) | latency median (IQR) | params | MFLOPs |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| **searched** | {_code(winner['arch'])} | {winner['acc']:.2f}% | {lat['median_ms']:.3f} ms ({lat['iqr_ms']:.3f}) | "
        f"{winner['params']:,} | {winner['mflops']:.2f} |",
    ]
    if baseline is not None:
        bl = baseline["latency"]
        lines.append(f"| best preset in budget: {baseline['source']} | {_code(baseline['arch'])} | {baseline['acc']:.2f}% | "
                     f"{bl['median_ms']:.3f} ms ({bl['iqr_ms']:.3f}) | {baseline['params']:,} | {baseline['mflops']:.2f} |")
    else:
        lines.append("| best preset in budget | none of the presets measures under the budget | | | | |")
    lines += _finetune_lines(finetune or [], winner_finetuned="acc_finetuned" in winner) + _weights_lines(winner)
    lines += _shipped_lines(winner.get("shipped") or {}, config["latency_ms"])
    from search.export import torchvision_equivalent
    from search_space import Arch

    call, why = torchvision_equivalent(Arch.parse(winner["arch"]))
    lines += ["", f"torchvision: `model.pt`'s `state_dict` loads (strict) into `{call}`" if call else
              "torchvision: outside `torchvision.models.ShuffleNetV2` because of " + "; ".join(why)
              + "; rebuild it with `search.export.load_model`"]
    lines += [
        "",
        "Accuracies are inherited supernet weights + BN recalibration on the validation split: a ranking "
        "proxy, not the accuracy of the network trained on its own. Latencies are medians of interleaved "
        "end-to-end measurements (batch 1) under the conditions above.",
        "",
        "Timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
        "",
        "Files: " + ", ".join(f"`{v}`" for v in files.values()) + ", `trials.csv`, `pareto.png`, `run.yaml`",
        "",
        "![accuracy vs latency](pareto.png)",
        "",
    ]
    path.write_text("\n".join(lines))


def _finetune_lines(finetune: list[dict], *, winner_finetuned: bool) -> list[str]:
    lines: list[str] = []
    if finetune:
        init = finetune[0].get("init", "inherited")  # runs before finetune_init fine-tuned
        how = ("fine-tuned from their inherited weights" if init == "inherited" else
               "trained from scratch (the retrain recipe over a short schedule)")
        if init == "inherited":
            ships = "the exported model is the winner's fine-tuned weights"
        elif winner_finetuned:  # --finetune-winner (and runs before it existed)
            ships = ("the winner is then fine-tuned from its inherited weights for as many epochs, and the exported "
                     "model carries its most accurate weights on the validation split (fine-tuned, from scratch or "
                     "inherited)")
        else:
            ships = ("the exported model carries the winner's more accurate weights on the validation split (from "
                     "scratch or inherited)")
        lines += ["", f"Final pick: the best candidates under the budget by one-shot score, {how}, with successive "
                  "halving within each stem variant (the weaker stop early); each stem's most accurate is a "
                  "finalist, and the finalist with the best one-shot score ships (a few epochs rank within a stem "
                  f"but favour the ImageNet stem across them); {ships}.", "",
                  "| candidate | stem | top-1 inherited | top-1 per training epoch | stopped | finalist | latency |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {_code(r['arch'])} | {r.get('stem', '')} | {r['acc_inherited']:.2f}% | "
                  + " / ".join(f"{a:.2f}" for a in r["finetune_acc"]) + f"% | {'yes' if r['pruned'] else 'no'} | "
                  f"{'yes' if r.get('finalist') else 'no'} | {r['latency_ms']:.3f} ms |" for r in finetune]
    return lines


def _weights_lines(winner: dict) -> list[str]:
    """Which of the winner's weights ship, beside the validation top-1 of each it had."""
    if "weights" not in winner:  # the one-shot score decided, or a run before this line existed
        return []
    accs = {"fine-tuned": winner.get("acc_finetuned"), "from scratch": winner.get("acc_scratch"),
            "inherited": winner["acc"]}
    names = {"fine-tuned": "fine-tuned", "scratch": "from scratch", "inherited": "inherited"}
    return ["", f"Shipped weights: **{names[winner['weights']]}** (validation top-1: "
            + ", ".join(f"{k} {v:.2f}%" for k, v in accs.items() if v is not None) + ")."]


def _shipped_lines(shipped: dict, budget_ms: float) -> list[str]:
    lines: list[str] = []
    if shipped:
        lines += ["", "Shipped artefacts, loaded back from this folder and measured interleaved after export "
                  "(batch 1, the threads above); the budget applies to the one marked:", "",
                  "| file | runtime | memory format | latency median (IQR) | note |", "| --- | --- | --- | --- | --- |"]
        for v in shipped.values():
            note = []
            if v["primary"]:
                note.append("**budget checked on this one**")
            if v["median_ms"] > budget_ms:  # any artefact a user may ship
                note.append(f"**over the {budget_ms:g} ms budget**")
            if v["noisy"]:
                note.append("**unreliable: IQR over 10% of the median after a re-measurement**" if v["primary"]
                            else "noisy: IQR over 10% of the median (measured once: the budget is not checked on it)")
            lines.append(f"| `{v['file']}` | {v['runtime']} | {v['memory_format']} | {v['median_ms']:.3f} ms "
                         f"({v['iqr_ms']:.3f}) | {'; '.join(note)} |")
    return lines

"""DVC stage `report`: reports/tables.md (with Table 5 from metrics/ablations.json, Tables 2-4 from
`evaluate` and `finetune`, Figure 9 from metrics/retention.json), its figures and reports/samples.png
from metrics and generated data."""
from pathlib import Path

from freemask.active.report import judge_table, plot_curves, rounds_table
from freemask.io import read_json, write_text, write_with
from freemask.reports.ablations import table5
from freemask.reports.figures import per_class_iou, training_curves
from freemask.reports.grids import object_and_composite_grid
from freemask.reports.paper import figure9, retention_rows, table2, table3, table4
from freemask.reports.tables import spine_report
from freemask.runtime import run_stage
from freemask.labels import toy_labels


def _json(path: str) -> dict:
    return read_json(path, "re-run the stage that writes it (dvc repro)")


def filter_section(details: dict) -> str:
    """The filter stage's rounds (Figure 8) and its judgement, as markdown."""
    return (f"\n## Filtering (Algorithm 1): rounds and the filter judged (retain α = {details['retain']}; "
            "docs/active_learning.md)\n\n" + rounds_table(details["rounds"]) + "\n" + judge_table(details["rounds"])
            + "\n![val mIoU per round](figures/filter_rounds.png)\n")


def paper_section(evaluated: dict, finetuned: dict, spread_group: dict, retention: dict, classes: list[str],
                  default_retain: float, figure: Path) -> str:
    """Tables 2-4 and Figure 9, toy analogs, as markdown (Figure 9's PNG written to ``figure``)."""
    zero_shot = table4(evaluated, finetuned) or (
        "This run's profile has no unseen classes. `dvc exp run -S 'profile.unseen=[balloon,chair]'` gives the "
        "table: the real segmenters then train with those classes' pixels ignored (docs/profiles.md).\n")
    rows = retention_rows(retention["groups"], default_retain)
    return ("\n## The paper's tables, toy analogs (toy val as stored; docs/report.md)\n\n"
            "### Table 2: per-class IoU (%), this run (in brackets: mean ± sd over the seed spread's runs)\n\n"
            "S + R: the synthetic-only segmenter fine-tuned on a small real subset; R only: the same subset, "
            "as many steps, from scratch (docs/report.md).\n\n" + table2(evaluated, finetuned, spread_group, classes)
            + "\n### Table 3: grouped IoU (%), every class outside the groups scored as background\n\n"
            + table3(evaluated, finetuned)
            + "\n### Table 4: seen and unseen classes (%)\n\n" + zero_shot
            + f"\n### Figure 9: the retention sweep (runs of commit {str(retention['baseline_rev'])[:7]}; "
              "`freemask queue retention`)\n\n" + figure9(rows, figure)
            + f"\n![retention sweep]({figure.relative_to(figure.parent.parent).as_posix()})\n")


def main(p):
    labels = toy_labels()
    out = Path("reports")
    details = _json("metrics/details/eval.json")
    spread = _json("metrics/spread.json")
    ablations = _json("metrics/ablations.json")
    filtering = _json("metrics/details/filter.json")
    paper = paper_section(details, _json("metrics/details/finetune.json"), spread["groups"][0],
                          _json("metrics/retention.json"), ["background", *labels.classes], p.active.retain,
                          out / "figures/retention.png")
    write_text(out / "tables.md", spine_report(_json("metrics/eval.json"), details,
                                               _json("metrics/details/generator_quality.json"), spread,
                                               list(labels.classes), p.compose.mode)
               + f"\n## Table 5: image-editing ablations (runs of commit {str(ablations['baseline_rev'])[:7]} and the "
                 "commits each row names, JPEG val, synthetic only; docs/composition.md)\n\n"
               + table5(ablations["groups"]) + filter_section(filtering) + paper)
    plot_curves({f"α = {filtering['retain']}": filtering["rounds"]}, out / "figures/filter_rounds.png")
    per_class_iou(details, spread["groups"][0], list(labels.names), out / "figures/per_class_iou.png")
    training_curves({w: _json(f"metrics/details/train_{w}.json")["heldout_history"] for w in ("synthetic", "real")},
                    out / "figures/training_curves.png")
    grid = object_and_composite_grid("data/generated/objects", "data/composed", p.report.grid_samples)
    write_with(out / "samples.png", lambda tmp: grid.save(tmp, format="png"))


if __name__ == "__main__":
    run_stage(main)

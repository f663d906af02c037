"""DVC stage `report`: reports/tables.md (with Table 5 from metrics/ablations.json), its figures and
reports/samples.png from metrics and generated data."""
from pathlib import Path

from freemask.io import read_json, write_text, write_with
from freemask.reports.ablations import table5
from freemask.reports.figures import per_class_iou, training_curves
from freemask.reports.grids import object_and_composite_grid
from freemask.reports.tables import spine_report
from freemask.runtime import run_stage
from freemask.labels import toy_labels


def _json(path: str) -> dict:
    return read_json(path, "re-run the stage that writes it (dvc repro)")


def main(p):
    labels = toy_labels()
    out = Path("reports")
    details = _json("metrics/details/eval.json")
    spread = _json("metrics/spread.json")
    ablations = _json("metrics/ablations.json")
    write_text(out / "tables.md", spine_report(_json("metrics/eval.json"), details,
                                               _json("metrics/details/generator_quality.json"), spread,
                                               list(labels.classes), p.compose.mode)
               + f"\n## Table 5: image-editing ablations (runs of commit {str(ablations['baseline_rev'])[:7]}, "
                 "JPEG val, synthetic only; docs/composition.md)\n\n" + table5(ablations["groups"]))
    per_class_iou(details, spread["groups"][0], list(labels.names), out / "figures/per_class_iou.png")
    training_curves({w: _json(f"metrics/details/train_{w}.json")["heldout_history"] for w in ("synthetic", "real")},
                    out / "figures/training_curves.png")
    grid = object_and_composite_grid("data/generated/objects", "data/composed", p.report.grid_samples)
    write_with(out / "samples.png", lambda tmp: grid.save(tmp, format="png"))


if __name__ == "__main__":
    run_stage(main)

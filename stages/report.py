"""DVC stage `report`: reports/tables.md and reports/samples.png from metrics and generated data."""
import json
from pathlib import Path

from freemask.reports.grids import object_and_composite_grid
from freemask.reports.tables import spine_report
from freemask.io import write_text
from freemask.runtime import run_stage
from freemask.world.spec import CLASSES


def main(p):
    out = Path("reports")
    out.mkdir(exist_ok=True)
    metrics = json.loads(Path("metrics/eval.json").read_text())
    quality = json.loads(Path("metrics/generator_quality.json").read_text())
    write_text(out / "tables.md", spine_report(metrics, quality, list(CLASSES), p.compose.mode))
    grid = object_and_composite_grid("data/generated/objects", "data/composed", p.report.grid_samples)
    grid.save(out / "samples.png")


if __name__ == "__main__":
    run_stage(main)

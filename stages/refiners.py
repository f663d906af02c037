"""DVC stage `refiners` (extras/dvc.yaml, opt-in): PaintSeg and the Independence-Prior GAN against the attention masks they
start from, per class, on generated samples (vs the oracle) and on noised renders (vs the truth)."""
from freemask.assess.refiners import generated_subset, refiners_table, render_subset
from freemask.diffusion.models import load_generator
from freemask.io import write_text
from freemask.reports.tables import refiners_tables
from freemask.runtime import run_stage, set_threads, write_json
from freemask.world.spec import CLASSES
from freemask.segmenters.mask2former import load_segmenter


def main(p):
    set_threads(p.refiners.threads)
    gen = load_generator("models/generator")
    oracle = load_segmenter("models/segmenter_real")
    generated = generated_subset("data/generated/objects", p.refiners.per_class, oracle)
    renders = render_subset(gen, p, p.refiners.renders_per_class, generated.images.shape[1])
    pool = generated_subset("data/generated/objects", None, oracle) if "independence" in p.refiners.methods else None
    table = refiners_table(p, gen, generated, renders, pool)
    write_json("metrics/details/refiners.json", table)
    write_json("metrics/refiners.json", {
        f"{method}_{where}_{k}": row[where][part]["mean"]
        for method, row in table["methods"].items()
        for where in ("vs_oracle_on_generated", "vs_truth_on_noised_renders")
        for k, part in (("start", "start"), ("refined", "method"), ("gain", "gain"))})
    write_text("reports/refiners.md", "# Mask refiners against the attention masks they start from (docs/refiners.md)\n\n"
               + refiners_tables(table, list(CLASSES)))


if __name__ == "__main__":
    run_stage(main)

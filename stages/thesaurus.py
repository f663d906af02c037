"""DVC stage `thesaurus`: the Adaptive Matching Thesaurus R(o, b) of the caption corpus
(``thesaurus.corpus``; the toy world's text-only captions by default), as a table and a heatmap,
and for the toy world's own corpus its error against the R the world's priors imply. The words
are ``thesaurus.vocabulary``'s, else the profile's (the toy world's synonym lists, or a real
profile's classes, sub-class phrases and backgrounds)."""
from freemask.labels import from_profile
from freemask.runtime import run_stage, write_json
from freemask.thesaurus import (count, heatmap, load_vocabulary, lookup, profile_vocabulary, scan_captions, table,
                                toy_vocabulary, write_csv)
from freemask.world.captions import implied_thesaurus

WORLD_CORPUS = "data/world/captions.txt"


def main(p):
    t = p.thesaurus
    if t.vocabulary is not None:
        vocab = load_vocabulary(t.vocabulary)
    else:
        vocab = toy_vocabulary() if p.profile.name == "toy" else profile_vocabulary(from_profile(p.profile))
    counts = count(scan_captions(t.corpus, t.format, t.field), vocab, source=t.corpus)
    thesaurus = table(counts)
    write_csv(thesaurus, "data/thesaurus/thesaurus.csv")
    heatmap(thesaurus, "reports/figures/thesaurus.png")
    errors = None
    if p.profile.name == "toy" and t.corpus == WORLD_CORPUS and t.vocabulary is None:
        r, implied = lookup(thesaurus), implied_thesaurus(p.world.max_objects)
        errors = {f"{o}|{b}": round(abs(r[b][o] - implied[b][o]), 6) for b in implied for o in implied[b]}
    write_json("metrics/details/thesaurus.json", {"corpus": t.corpus, "captions": counts["captions"],
                                                  "captions_per_background": counts["background"],
                                                  "abs_error_vs_world_priors": errors})
    write_json("metrics/thesaurus.json", {"max_abs_error_vs_world_priors": max(errors.values()) if errors else None})


if __name__ == "__main__":
    run_stage(main)

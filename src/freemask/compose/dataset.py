"""The compose step on the params: which objects may join which scenes, the tools, the composites."""
from __future__ import annotations

from ..errors import DataError
from ..labels import from_profile
from ..thesaurus import allowed_labels, read_csv
from .scenes import compose_dataset, load_tools


def compose_from_params(p, objects_dir, scenes_dir, out_dir, thesaurus_csv, placement_dir, harmonizer_dir) -> dict:
    """The compose stage on params ``p`` (a ``params.Params``): under ``compose.mode=thesaurus`` the
    table at ``thesaurus_csv`` decides which objects join which scenes; the placement and
    harmonization models are read when ``compose.placement`` / ``compose.harmonize`` use them."""
    classes = list(from_profile(p.profile).classes)
    allowed = None
    if p.compose.mode == "thesaurus":
        try:
            allowed = allowed_labels(read_csv(thesaurus_csv), classes, p.thesaurus.threshold)
        except ValueError as err:
            raise DataError(thesaurus_csv, str(err),
                            hint="re-run the `thesaurus` stage for the profile's classes") from None
    tools = load_tools(p.compose, classes, p.placement, placement_dir, harmonizer_dir, p.harmonize)
    return compose_dataset(p.compose, objects_dir, scenes_dir, out_dir, tools, allowed)

"""The optional mmsegmentation backend (the `mmseg` extra, docs/mmseg.md): config generation and a
training / evaluation entry point. Kept apart from `segmenters`, which the toy stages depend on."""

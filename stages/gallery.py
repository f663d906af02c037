"""DVC stage `gallery`: reports/gallery.html, the generated objects with their masks and filter
scores (the synthetic-trained segmenter's IoU with each pseudo-mask) in one static page, and the
gallery's counts in metrics/details/gallery.json."""
from freemask.labels import from_profile
from freemask.reports.gallery import write_gallery
from freemask.runtime import run_stage, set_threads, write_json


def main(p):
    set_threads(p.gallery.threads)
    details = write_gallery("data/generated/objects", "models/segmenter_synthetic", "reports/gallery.html",
                            from_profile(p.profile), p.gallery)
    write_json("metrics/details/gallery.json", details)


if __name__ == "__main__":
    run_stage(main)

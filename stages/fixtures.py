"""DVC stages of pipelines/fixtures: a fixture dataset of the smoke profiles, in its dataset's exact
on-disk format (``python stages/fixtures.py {voc,cityscapes,ade20k,captions} OUT``; freemask.fixtures)."""
import sys

from freemask.fixtures import main

if __name__ == "__main__":
    sys.exit(main())

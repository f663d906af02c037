"""Repository maintenance tools (not imported by the pipeline): `stage_deps` keeps dvc.yaml's code deps exact."""

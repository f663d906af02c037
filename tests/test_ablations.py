"""Table 5: the ablation rows are valid params, and the table judges differences by the seed spread."""
import copy

from freemask.params import dump_defaults, validate
from freemask.reports.ablations import BALLOON, MIOU, SWEEPS, TABLE5, queue_args, queue_commands, table5


def _set(data: dict, dotted: str, value) -> None:
    *path, key = dotted.split(".")
    for p in path:
        data = data[p]
    assert key in data, dotted  # an override of a key params.yaml does not have would never match a run
    data[key] = value


def test_every_row_is_a_valid_params_override():
    for overrides in (row for sweep in SWEEPS.values() for row in sweep.values()):
        data = copy.deepcopy(dump_defaults())
        for k, v in overrides.items():
            _set(data, k, v)
        validate(data)  # raises ParamsError naming the key


def test_queue_commands_cover_every_row_but_the_baseline_over_three_seeds():
    cmds = queue_commands()
    assert len(cmds) == len(TABLE5) - 1
    assert all(c.startswith("dvc exp run --queue -S ") and c.endswith("-S 'seed=range(0,3)'") for c in cmds)
    assert "-S compose.mode=random" in cmds[1] and "-S compose.placement=learned" in cmds[1]


def _group(overrides, seeds, miou, sd, balloon=0.7):
    n = len(seeds)
    return {"params": overrides, "seeds": seeds, "runs": [f"r{s}" for s in seeds],
            "metrics": {MIOU: {"mean": miou, "sd": sd, "n": n}, BALLOON: {"mean": balloon, "sd": sd, "n": n}}}


def test_table_rows_deltas_and_the_two_sd_rule():
    full = TABLE5["full editing"]
    groups = [_group({}, [0, 1, 2], 0.87, 0.01),
              _group(full, [0, 1, 2], 0.90, 0.01, balloon=0.8),
              # the spread lists only params that differ from the baseline: placement=random is the default
              _group({k: v for k, v in TABLE5["placement: random"].items() if k != "compose.placement"},
                     [0, 1, 2], 0.885, 0.01),
              _group({k: v for k, v in TABLE5["harmonization: none"].items() if k != "compose.harmonize"}, [0], 0.80, 0.0)]
    lines = table5(groups).splitlines()
    row = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert "| 0, 1, 2 | – | 90.0 ± 1.0 | 80.0 ± 1.0 | – | – |" in row["full editing"]
    assert row["placement: random"].endswith("| -1.5 | no |")  # 1.5 points < 2 x 1.0
    assert row["baseline (defaults: by background, random placement, no harmonization)"].endswith("| -3.0 | yes |")
    assert row["harmonization: none"].endswith("| -10.0 | n/a (one seed) |")
    assert "| not run |" in row["placement: prior"]


def test_groups_kept_from_an_earlier_spread_are_marked_with_their_commit():
    from freemask.metrics.spread import keep_earlier

    full = TABLE5["full editing"]
    stat = {**full, "compose.harmonize": "statistics"}
    earlier = {"baseline_rev": "a" * 40, "groups": [_group({}, [0], 0.87, 0.0), _group(full, [0, 1, 2], 0.90, 0.01),
                                                     _group(stat, [2], 0.55, 0.0)]}
    now = [_group({}, [0], 0.88, 0.0), _group(stat, [0, 1, 2], 0.91, 0.01)]
    merged = keep_earlier(now, "b" * 40, earlier)
    # the new commit's groups win where both have the params; the rest come from the earlier file
    assert [(g["params"], g["rev"][0]) for g in merged] == [({}, "b"), (stat, "b"), (full, "a")]
    row = {line.split(" | ")[0].lstrip("| "): line for line in table5(merged).splitlines()[2:]}
    assert row["harmonization: statistics"].startswith("| harmonization: statistics | 0, 1, 2 | bbbbbbb | 91.0 ± 1.0")
    assert "| aaaaaaa |" in row["full editing"]


def test_queue_names_every_sweep_s_rows_and_the_seed_span():
    from typer.testing import CliRunner

    from freemask.cli import app

    assert queue_args("rules", (1, 5))[0] == ["dvc", "exp", "run", "--queue", "-S", "generate.threshold.rule=fixed",
                                              "-S", "seed=range(1,5)"]
    res = CliRunner().invoke(app, ["queue", "all", "--seeds", "0-1", "--dry-run"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    n = sum(1 for sweep in SWEEPS.values() for row in sweep.values() if row)
    assert len(lines) == n + 1 and lines[-1].startswith(f"{n} commands ({2 * n} experiments)")
    assert any("-S active.retain=1.0" in line for line in lines)
    bad = CliRunner().invoke(app, ["queue", "tabel5", "--dry-run"])
    assert bad.exit_code == 2 and "no sweep 'tabel5': one of table5, rules, retention" in bad.output


def test_a_group_measured_at_two_commits_names_both():
    g = {**_group(TABLE5["thesaurus only (random placement, no harmonization, nothing dropped)"], [0, 1], 0.89, 0.02),
         "revs": ["a" * 40, "b" * 40], "rev": "a" * 40}
    row = [line for line in table5([_group({}, [0], 0.87, 0.0), g]).splitlines() if line.startswith("| thesaurus")][0]
    assert "| 0, 1 | aaaaaaa + bbbbbbb | 89.0 ± 2.0 |" in row

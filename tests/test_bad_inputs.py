"""Every bad input, as a new user would type it, is refused where it enters: exit
status 2, exactly one line on stderr naming the value, no traceback, and no file in
the working folder created, changed or removed.

One table of command lines and sweep specs runs in-process through ``phantom``'s
entry point (``runner.cli.main``) in a working folder holding a real run, a real
sweep and quantities, look-alike files (the right ``phantom_schema`` attribute,
other content), outputs that already exist and an unwritable folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.conftest import TINY_SWEEP

RUN = ["run", "--model", "tiny-gpt2", "--context", "start-begin", "--steps", "3", "--quiet"]
QUANTITIES = ["quantities", "tiny-gpt2", "--contexts", "start-begin", "--quiet"]
# the sweep and quantities of tiny-gpt2, LoRA with AdamW
FIT_ON = ["--fit-on", "sweep", "quantities.nc", "--mode", "lora", "--optimizer", "adamw"]


def _run(flags, out="new.nc"):
    return [*RUN, *flags, "--out", out]


def _quantities(flags, out="q.nc"):
    return [*QUANTITIES, *flags, "--out", out]


def _fit(flags, out="fit.nc", command="fit"):
    return [command, *FIT_ON, *flags, "--out", out]


def _spec(edit: str) -> str:
    """TINY_SWEEP edited: ``old=>new`` replaces text, a table (``[name] ...``) is
    added at the end, and a key at the top."""
    if "=>" in edit:
        old, new = edit.split("=>")
        assert old in TINY_SWEEP, old
        return TINY_SWEEP.replace(old, new)
    return TINY_SWEEP + "\n" + edit if edit.startswith("[") else edit + "\n" + TINY_SWEEP


# (id, argv, fragment of the error line). ``{RO}`` is an unwritable folder; a spec
# case's argv starts with "spec:EDIT" and runs `phantom sweep specs/ID.toml --out
# out-ID` (or the --out it names).
CASES = [
    # -- phantom run: every option and the output -------------------------------------
    ("steps-float", _run(["--steps", "10.7"]), "10.7"),
    ("steps-huge", _run(["--steps", "1e8"]), "100000000"),
    ("steps-word", _run(["--steps", "many"]), "many"),
    ("steps-zero", _run(["--steps", "0"]), "steps"),
    ("seed-2**70", _run(["--seed", str(2**70)]), str(2**70)),
    ("seed-negative", _run(["--seed=-1"]), "-1"),
    ("seed-fraction", _run(["--seed", "0.5"]), "0.5"),
    ("model-empty", _run(["--model", ""]), "model name is empty"),
    ("model-blank", _run(["--model", "  "]), "model name is empty"),
    ("model-unknown", _run(["--model", "no-such-model"]), "no-such-model"),
    ("model-a-file", _run(["--model", "run.nc"]), "run.nc"),
    ("weight-decay-negative", _run(["--weight-decay=-0.1"]), "-0.1"),
    ("weight-decay-nan", _run(["--weight-decay", "nan"]), "nan"),
    ("weight-decay-word", _run(["--weight-decay", "heavy"]), "heavy"),
    ("lora-alpha-nan", _run(["--mode", "lora", "--lora-alpha", "nan"]), "nan"),
    ("lora-alpha-zero", _run(["--mode", "lora", "--lora-alpha", "0"]), "alpha"),
    ("lora-rank-zero", _run(["--mode", "lora", "--lora-rank", "0"]), "rank"),
    ("lora-rank-fraction", _run(["--mode", "lora", "--lora-rank", "2.5"]), "2.5"),
    ("lora-targets-absent", _run(["--mode", "lora", "--lora-targets", "no_such_proj"]),
     "no_such_proj"),
    ("lora-targets-empty", _run(["--mode", "lora", "--lora-targets", ","]), "targets"),
    ("lr-inf", _run(["--lr", "inf"]), "inf"),
    ("lr-nan", _run(["--lr", "nan"]), "nan"),
    ("lr-zero", _run(["--lr", "0"]), "learning rate"),
    ("betas-one", _run(["--betas", "0.9"]), "betas"),
    ("betas-one-or-more", _run(["--betas", "0.9", "1.0"]), "1.0"),
    ("eps-zero", _run(["--eps", "0"]), "eps"),
    ("dtype-unknown", _run(["--dtype", "float8"]), "float8"),
    ("device-unknown", _run(["--device", "quantum"]), "quantum"),
    ("geometry-unknown", _run(["--geometry", "middle"]), "middle"),
    ("mode-half", _run(["--mode", "half"]), "half"),
    ("optimizer-unknown", _run(["--optimizer", "lbfgs"]), "lbfgs"),
    ("hash-interval-zero", _run(["--hash-interval", "0"]), "hash interval"),
    ("tie-unknown", _run(["--tie", "sideways"]), "sideways"),
    ("revision-of-builtin", _run(["--revision", "main"]), "revision"),
    ("context-empty", _run(["--context", ""]), "context"),
    ("context-unknown", _run(["--context", "no-such-context"]), "no-such-context"),
    ("run-out-missing-folder", _run([], "missing/x.nc"), "missing"),
    ("run-out-a-folder", _run([], "sweep"), "sweep"),
    ("run-out-unwritable", _run([], "{RO}/x.nc"), "writ"),
    ("run-out-exists", _run([], "run.nc"), "--overwrite"),
    ("run-out-empty", _run([], ""), "empty"),
    ("run-unknown-flag", [*RUN, "--bogus", "1", "--out", "new.nc"], "--bogus"),
    ("run-no-out", RUN, "--out"),
    ("steps-nan", _run(["--steps", "nan"]), "nan"),
    ("seed-empty", _run(["--seed", ""]), "--seed"),
    ("lr-empty", _run(["--lr", ""]), "--lr"),
    ("eps-nan", _run(["--eps", "nan"]), "nan"),
    ("betas-nan", _run(["--betas", "0.9", "nan"]), "nan"),
    ("lora-alpha-inf", _run(["--mode", "lora", "--lora-alpha", "inf"]), "inf"),
    ("device-empty", _run(["--device", ""]), "device"),
    ("dtype-empty", _run(["--dtype", ""]), "dtype"),
    ("no-command", [], "command"),
    # -- phantom quantities -------------------------------------------------------------
    ("quantities-modes-half", _quantities(["--modes", "half"]), "half"),
    ("quantities-optimizers", _quantities(["--optimizers", "lbfgs"]), "lbfgs"),
    ("quantities-hessian-method", _quantities(["--hessian-method", "exact"]), "exact"),
    ("quantities-hessian-tol", _quantities(["--hessian-tol", "0"]), "0"),
    ("quantities-sample-rows", _quantities(["--sample-rows", "1"]), "1"),
    ("quantities-lora-alpha-nan", _quantities(["--lora-alpha", "nan"]), "nan"),
    ("quantities-dtype", _quantities(["--dtype", "float8"]), "float8"),
    ("quantities-no-model", ["quantities", "--out", "q.nc"], "model"),
    ("quantities-context-unknown",
     ["quantities", "tiny-gpt2", "--contexts", "no-such-context", "--out", "q.nc"],
     "no-such-context"),
    ("quantities-spec-missing", ["quantities", "--spec", "none.toml", "--out", "q.nc"],
     "none.toml"),
    ("quantities-out-exists", _quantities([], "quantities.nc"), "--overwrite"),
    ("quantities-out-unwritable", _quantities([], "{RO}/q.nc"), "writ"),
    ("quantities-hessian-max-iter", _quantities(["--hessian-max-iter", "0"]), "0"),
    ("quantities-modes-none", _quantities(["--modes", ","]), "mode"),
    # -- the pure commands on files -----------------------------------------------------
    ("plot-xyz", ["plot", "run.nc", "-o", "x.xyz"], "x.xyz"),
    ("plot-no-suffix", ["plot", "run.nc", "-o", "figure"], "figure"),
    ("plot-exists", ["plot", "run.nc", "-o", "exists.png"], "--overwrite"),
    ("plot-unwritable", ["plot", "run.nc", "-o", "{RO}/x.png"], "writ"),
    ("plot-look-alike", ["plot", "look/run.nc", "-o", "x.png"], "look/run.nc"),
    ("plot-sweep-xyz", ["plot-sweep", "sweep", "-o", "s.xyz"], "s.xyz"),
    ("show-look-alike", ["show", "look/run.nc"], "look/run.nc"),
    ("show-a-folder", ["show", "sweep"], "folder"),
    ("show-a-text-file", ["show", "spec.toml"], "spec.toml"),
    ("show-a-sweep", ["show", "sweep/sweep.nc"], "not a phantom-theory trajectory"),
    ("sweep-show-look-alike", ["sweep-show", "look/sweep.nc"], "look/sweep.nc"),
    ("sweep-show-empty-folder", ["sweep-show", "empty"], "empty"),
    ("sweep-show-a-run", ["sweep-show", "run.nc"], "not a phantom-theory sweep"),
    ("fit-draws-zero", _fit(["--draws", "0"]), "draws"),
    ("fit-chains-zero", _fit(["--chains", "0"]), "chains"),
    ("fit-target-accept", _fit(["--target-accept", "1.5"]), "1.5"),
    ("fit-tune-negative", _fit(["--tune=-5"]), "-5"),
    ("fit-sampler", _fit(["--sampler", "stan"]), "stan"),
    ("fit-theory", _fit(["--theory", "nope"]), "nope"),
    ("fit-predictor", _fit(["--predictor", "volume"]), "volume"),
    ("fit-mode-half", _fit(["--mode", "half"]), "half"),
    ("fit-optimizer-absent", _fit(["--optimizer", "sgd"]), "sgd"),
    ("fit-mode-absent", _fit(["--mode", "full"]), "full"),
    ("fit-seed-negative", _fit(["--seed=-1"]), "-1"),
    ("fit-rhat", _fit(["--rhat-max", "0.5"]), "0.5"),
    ("fit-target-accept-nan", _fit(["--target-accept", "nan"]), "nan"),
    ("fit-ess-nan", _fit(["--ess-min", "nan"]), "ess_min"),
    ("compare-workers-word", _fit(["--workers", "two"], "c.nc", "compare"), "two"),
    ("loao-no-theories", _fit(["--theories"], "t", "loao"), "--theories"),
    ("fit-on-one-path", ["fit", "--fit-on", "sweep", "--out", "fit.nc"], "--fit-on"),
    ("fit-out-exists", _fit([], "run.nc"), "--overwrite"),
    ("fit-out-unwritable", _fit([], "{RO}/fit.nc"), "writ"),
    ("fit-look-alike-quantities", ["fit", "--fit-on", "sweep", "look/quantities.nc",
                                   "--out", "fit.nc"], "look/quantities.nc"),
    ("fit-look-alike-sweep", ["fit", "--fit-on", "look/sweep.nc", "quantities.nc",
                              "--out", "fit.nc"], "look/sweep.nc"),
    ("fit-missing-quantities", ["fit", "--fit-on", "sweep", "none.nc", "--out", "fit.nc"],
     "none.nc"),
    ("compare-workers-zero", _fit(["--workers", "0"], "c.nc", "compare"), "workers"),
    ("compare-out-exists", _fit([], "run.nc", "compare"), "--overwrite"),
    ("compare-theories", _fit(["--theories", "nope"], "c.nc", "compare"), "nope"),
    ("loao-out-not-empty", _fit([], "sweep", "loao"), "--overwrite"),
    ("loao-out-a-file", _fit([], "run.nc", "loao"), "run.nc"),
    ("loao-out-unwritable", _fit([], "{RO}/theory", "loao"), "writ"),
    ("loao-workers-negative", _fit(["--workers=-2"], "t", "loao"), "-2"),
    ("predict-held-out-empty", ["predict", "--held-out", "", *FIT_ON, "--out", "p.nc"],
     "''"),
    ("predict-held-out-unknown", ["predict", "--held-out", "gpt5", *FIT_ON, "--out", "p.nc"],
     "gpt5"),
    ("predict-out-exists", ["predict", "--held-out", "tiny-gpt2", *FIT_ON, "--out", "run.nc"],
     "--overwrite"),
    ("predict-context-and-held-out", ["predict", "--held-out", "tiny-gpt2", "--context",
                                      "start-begin", *FIT_ON, "--out", "p.nc"], "not allowed with"),
    ("predict-no-target", ["predict", *FIT_ON, "--out", "p.nc"], "--contexts-file"),
    ("predict-context-unknown", ["predict", "--context", "nope", *FIT_ON, "--out", "p.nc"],
     "'nope'"),
    ("predict-context-empty", ["predict", "--context", "", *FIT_ON, "--out", "p.nc"], "''"),
    ("predict-context-every-row", ["predict", "--context", "start-begin", *FIT_ON, "--out",
                                   "p.nc"], "leaves no outcome row"),
    ("predict-context-out-exists", ["predict", "--context", "start-begin", *FIT_ON, "--out",
                                    "run.nc"], "--overwrite"),
    ("predict-contexts-file-missing", ["predict", "--contexts-file", "none.toml", *FIT_ON,
                                       "--out", "p.nc"], "none.toml"),
    ("predict-contexts-file-a-spec", ["predict", "--contexts-file", "spec.toml", *FIT_ON,
                                      "--out", "p.nc"], "[[context]]"),
    ("predict-contexts-file-not-toml", ["predict", "--contexts-file", "run.nc", *FIT_ON,
                                        "--out", "p.nc"], "not TOML"),
    ("fit-held-out-contexts-unknown", _fit(["--held-out-contexts", "nope"]), "'nope'"),
    ("fit-held-out-contexts-none", _fit(["--held-out-contexts"]), "--held-out-contexts"),
    ("compare-held-out-contexts-empty", _fit(["--held-out-contexts", ""], "c.nc", "compare"),
     "''"),
    ("score-look-alike", ["score", "look/prediction.nc", "--sweep", "sweep"],
     "look/prediction.nc"),
    ("score-missing", ["score", "none.nc", "--sweep", "sweep"], "none.nc"),
    ("score-a-run", ["score", "run.nc", "--sweep", "sweep"], "not a phantom-theory prediction"),
    ("report-empty-folder", ["report", "empty", "-o", "r.html"], "empty"),
    ("report-missing-folder", ["report", "none", "-o", "r.html"], "none"),
    ("report-exists", ["report", "sweep", "-o", "exists.html"], "--overwrite"),
    ("report-unwritable", ["report", "sweep", "-o", "{RO}/r.html"], "writ"),
    ("report-a-file", ["report", "run.nc", "-o", "r.html"], "run.nc"),
    ("plot-empty-output", ["plot", "run.nc", "-o", ""], "''"),
    # -- phantom sweep: the spec and the folder -----------------------------------------
    ("spec-steps-float", ["spec:steps = 5=>steps = 10.7"], "10.7"),
    ("spec-steps-string", ["spec:steps = 5=>steps = \"10\""], "'10'"),
    ("spec-steps-bool", ["spec:steps = 5=>steps = true"], "True"),
    ("spec-steps-huge", ["spec:steps = 5=>steps = 100000000"], "100000000"),
    ("spec-steps-negative", ["spec:steps = 5=>steps = -3"], "-3"),
    ("spec-seeds-2**70", [f"spec:seeds = [{2**70}]"], str(2**70)),
    ("spec-seeds-fraction", ["spec:seeds = [0.5]"], "0.5"),
    ("spec-seeds-string", ["spec:seeds = \"0\""], "'0'"),
    ("spec-seeds-negative", ["spec:seeds = [-1]"], "-1"),
    ("spec-seeds-repeated", ["spec:seeds = [0, 0]"], "seeds"),
    ("spec-models-string", ["spec:models = [\"tiny-gpt2\"]=>models = \"tiny-gpt2\""],
     "'tiny-gpt2'"),
    ("spec-models-number", ["spec:models = [\"tiny-gpt2\"]=>models = [1]"], "1"),
    ("spec-models-unknown", ["spec:models = [\"tiny-gpt2\"]=>models = [\"no-such-model\"]"],
     "no-such-model"),
    ("spec-models-repeated",
     ["spec:models = [\"tiny-gpt2\"]=>models = [\"tiny-gpt2\", \"tiny-gpt2\"]"], "tiny-gpt2"),
    ("spec-contexts-number", ["spec:contexts = [\"start-begin\"]=>contexts = 5"], "5"),
    ("spec-contexts-unknown",
     ["spec:contexts = [\"start-begin\"]=>contexts = [\"no-such-context\"]"],
     "no-such-context"),
    ("spec-contexts-empty", ["spec:contexts = [\"start-begin\"]=>contexts = []"], "contexts"),
    ("spec-contexts-word", ["spec:contexts = [\"start-begin\"]=>contexts = \"some\""], "some"),
    ("spec-contexts-selected-none",
     ["spec:contexts = [\"start-begin\"]=>contexts = \"selected\""], "tiny-gpt2"),
    ("spec-modes-half", ["spec:modes = [\"lora\"]=>modes = [\"half\"]"], "half"),
    ("spec-slots-zero", ["spec:slots = 0"], "slots"),
    ("spec-slots-fraction", ["spec:slots = 2.5"], "2.5"),
    ("spec-name-number", ["spec:name = 5"], "name"),
    ("spec-selected-count-zero", ["spec:selected_count = 0"], "selected_count"),
    ("spec-unknown-key", ["spec:colour = \"blue\""], "colour"),
    ("spec-no-models", ["spec:models = [\"tiny-gpt2\"]=>"], "models"),
    ("spec-run-not-a-table", ["spec:run = 5"], "[run]"),
    ("spec-run-rank-string", ["spec:[lr]=>[run]\nlora_rank = \"8\"\n[lr]"], "'8'"),
    ("spec-run-dtype-number", ["spec:[lr]=>[run]\ndtype = 64\n[lr]"], "64"),
    ("spec-run-unknown", ["spec:[lr]=>[run]\nbogus = 1\n[lr]"], "bogus"),
    ("spec-run-steps", ["spec:[lr]=>[run]\nsteps = 3\n[lr]"], "steps"),
    ("spec-run-weight-decay", ["spec:[lr]=>[run]\nweight_decay = -1.0\n[lr]"], "-1.0"),
    ("spec-run-alpha-nan", ["spec:[lr]=>[run]\nlora_alpha = nan\n[lr]"], "nan"),
    ("spec-run-device", ["spec:[lr]=>[run]\ndevice = \"quantum\"\n[lr]"], "quantum"),
    ("spec-lr-lo-word", ["spec:lo = 1e-4=>lo = \"small\""], "small"),
    ("spec-lr-tolerance", ["spec:tolerance = 0.5=>tolerance = -1.0"], "-1.0"),
    ("spec-lr-grid", ["spec:grid_points = 3=>grid_points = 1"], "2 grid points, not 1"),
    ("spec-lr-method", ["spec:[lr]=>[lr]\nmethod = \"magic\""], "magic"),
    ("spec-lr-keys-at-top", ["spec:[lr]\n=>junk = 1\n"], "junk"),
    ("spec-outcome-unknown", ["spec:[outcome]\nbogus = 1"], "bogus"),
    ("spec-jumps-window", ["spec:[jumps]\nwindow = 0"], "window"),
    ("spec-not-toml", ["spec:models = ["], "TOML"),
    ("sweep-spec-a-folder", ["sweep", "specs", "--out", "s"], "specs"),
    ("sweep-spec-missing", ["sweep", "none.toml", "--out", "s"], "none.toml"),
    ("sweep-out-a-file", ["sweep", "spec.toml", "--out", "run.nc"], "run.nc"),
    ("sweep-out-unwritable", ["sweep", "spec.toml", "--out", "{RO}/s"], "writ"),
    ("sweep-out-not-a-sweep", ["sweep", "spec.toml", "--out", "look"], "look"),
    ("sweep-out-not-a-sweep-overwrite", ["sweep", "spec.toml", "--out", "look",
                                         "--overwrite"], "look"),
    ("sweep-out-another-spec", ["spec:steps = 5=>steps = 6", "--out", "sweep"], "steps"),
    ("sweep-engine", ["sweep", "spec.toml", "--out", "s", "--engine", "turbo"], "turbo"),
    ("sweep-out-empty", ["sweep", "spec.toml", "--out", ""], "empty"),
    # -- contexts and models ------------------------------------------------------------
    ("select-n-zero", ["contexts", "select", "tiny-gpt2", "--n", "0", "--out", "sel.toml"],
     "0"),
    ("select-margins", ["contexts", "select", "tiny-gpt2", "--min-margin", "5",
                        "--max-margin", "1", "--out", "sel.toml"], "min_margin"),
    ("select-out-exists", ["contexts", "select", "tiny-gpt2", "--out", "spec.toml"],
     "--overwrite"),
    ("select-max-rank-zero", ["contexts", "select", "tiny-gpt2", "--max-rank", "0", "--out",
                              "sel.toml"], "max_rank"),
    ("check-unknown-model", ["contexts", "check", "no-such-model"], "no-such-model"),
    ("check-unknown-context", ["contexts", "check", "tiny-gpt2", "--contexts", "nope"],
     "nope"),
    ("list-selected-unknown", ["contexts", "list", "--selected", "no-such-model"],
     "no-such-model"),
    ("pull-unknown", ["models", "pull", "no-such-model"], "no-such-model"),
]


def argv_of(case_id: str, argv: list[str], ro: Path) -> list[str]:
    """The command line of a case: a spec case runs `phantom sweep` on its spec."""
    if argv and argv[0].startswith("spec:"):
        out = argv[argv.index("--out") + 1] if "--out" in argv else f"out-{case_id}"
        return ["sweep", f"specs/{case_id}.toml", "--out", out, "--quiet"]
    return [a.replace("{RO}", str(ro)) for a in argv]


def _look_alikes(folder: Path) -> None:
    """Files whose phantom_schema attribute is right and whose content is not."""
    from phantom_theory.schema import SCHEMAS

    folder.mkdir()
    for kind, name in (("trajectory", "run.nc"), ("sweep", "sweep.nc"),
                       ("prediction", "prediction.nc")):
        xr.Dataset({"t": ("x", np.arange(3.0))},
                   attrs={"phantom_schema": SCHEMAS[kind]}).to_netcdf(folder / name)
    # the right variables, without their dims
    xr.Dataset({"m0": 1.0, "G0": 2.0, "lambda0": 3.0},
               attrs={"phantom_schema": SCHEMAS["quantities"]}).to_netcdf(
        folder / "quantities.nc")


def unwritable_folder(root: Path) -> Path:
    """A folder this process cannot write to, even as root (chmod, then the
    immutable flag, then /sys)."""
    folder = root / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    if _writable(folder):
        subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if _writable(folder):
        return Path("/sys")
    return folder


def _writable(folder: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


@pytest.fixture(scope="module")
def work(tmp_path_factory, saved_run, cli_sweep):
    """The working folder every case runs in, and its unwritable folder."""
    from runner.cli import main

    root = tmp_path_factory.mktemp("bad-inputs")
    shutil.copy2(saved_run, root / "run.nc")
    shutil.copytree(cli_sweep / "out", root / "sweep")
    (root / "spec.toml").write_text(TINY_SWEEP)
    assert main([*QUANTITIES, "--modes", "lora", "--optimizers", "adamw",
                 "--out", str(root / "quantities.nc")]) == 0
    _look_alikes(root / "look")
    (root / "empty").mkdir()
    for name in ("exists.png", "exists.html"):
        (root / name).write_bytes(b"keep")
    (root / "specs").mkdir()
    for case_id, argv, _ in CASES:
        if argv and argv[0].startswith("spec:"):
            (root / "specs" / f"{case_id}.toml").write_text(_spec(argv[0][len("spec:"):]))
    ro = unwritable_folder(tmp_path_factory.mktemp("locked"))
    yield root, ro
    subprocess.run(["chattr", "-i", str(ro)], capture_output=True, check=False)


def snapshot(root: Path) -> dict:
    """Every file and folder under ``root``: its kind, size and content digest."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        out[key] = ("dir",) if path.is_dir() else (
            path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


@pytest.mark.parametrize("case_id,argv,fragment", CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_is_one_clear_line(work, capsys, monkeypatch, case_id, argv, fragment):
    from runner.cli import main

    root, ro = work
    monkeypatch.chdir(root)
    before = snapshot(root)
    status = main(argv_of(case_id, argv, ro))
    err = capsys.readouterr().err
    assert status == 2, f"exit status {status}; stderr: {err}"
    assert err.startswith("phantom: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert fragment in err, err
    assert snapshot(root) == before, "the working folder changed"


def test_the_table_is_varied():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)

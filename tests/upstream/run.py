"""Run MLflow's own REST tests against stock `mlflow server` and against the secure server (as
an ordinary project maintainer), then print which tests fail on secure but not on stock.

    .venv/bin/python tests/upstream/run.py                  # both, one after the other
    .venv/bin/python tests/upstream/run.py --plugin-rev HEAD  # the plugin as committed
    .venv/bin/python tests/upstream/run.py --compare OUT     # print an earlier run's comparison
    .venv/bin/python tests/upstream/run.py -- -k registered  # extra pytest arguments after --

See docs/upstream-tests.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter, defaultdict
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = "tests/upstream/mlflow_tests"
FAILED = {"failed", "unknown"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("both", "stock", "secure"), default="both")
    parser.add_argument(
        "--client",
        choices=("token", "plugin"),
        default="token",
        help="how the user's key is sent: MLFLOW_TRACKING_TOKEN (default) or "
        "MLFLOW_TRACKING_AUTH=secure with MLFLOW_SECURE_API_KEY",
    )
    parser.add_argument(
        "--plugin-rev",
        metavar="REV",
        help="run the plugin (plugin/ and rego/) as committed at REV instead of the working "
        "tree (read with `git archive`; the checkout is not touched)",
    )
    parser.add_argument("--out", type=Path, help="directory for reports and server logs")
    parser.add_argument("--timeout", type=int, default=180, help="seconds per test")
    parser.add_argument("--parallel", action="store_true", help="run stock and secure at once")
    parser.add_argument(
        "--compare", type=Path, metavar="OUT", help="only compare the reports in OUT"
    )
    parser.add_argument("pytest_args", nargs="*", help="after `--`: extra pytest arguments")
    args = parser.parse_args(argv)

    if args.compare:
        return report(args.compare)

    out = args.out or Path(tempfile.mkdtemp(prefix="mlflow-secure-upstream-"))
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env["PATH"] = f"{REPO / '.tools' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    if args.plugin_rev:
        commit = git("rev-parse", f"{args.plugin_rev}^{{commit}}")
        source = export_plugin(commit, out / "plugin-src")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
        plugin = f"commit {commit[:12]} ({args.plugin_rev})"
    else:
        changed = git("status", "--porcelain", "--", "plugin", "rego").splitlines()
        plugin = (
            f"working tree: HEAD {git('rev-parse', 'HEAD')[:12]} + {len(changed)} changed files"
        )
    print(f"plugin: {plugin}")
    (out / "meta.json").write_text(json.dumps({"plugin": plugin, "client": args.client}))
    targets = ["stock", "secure"] if args.target == "both" else [args.target]
    started = time.monotonic()
    running = {}
    for target in targets:
        running[target] = launch(target, args, env, out)
        if not args.parallel:
            wait(target, *running[target])
    if args.parallel:
        for target, (process, began) in running.items():
            wait(target, process, began)
    print(f"total: {time.monotonic() - started:.0f} s; reports and logs in {out}")
    return report(out)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def export_plugin(rev: str, directory: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "plugin", "rego"], capture_output=True, check=True
    ).stdout
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory / "plugin"


def launch(target: str, args, env: dict[str, str], out: Path):
    command = [
        sys.executable,
        "-m",
        "pytest",
        TESTS,
        "-q",
        "-p",
        "no:cacheprovider",
        "--timeout",
        str(args.timeout),
        *args.pytest_args,
    ]
    target_env = {
        **env,
        "MLS_UPSTREAM_TARGET": target,
        "MLS_UPSTREAM_CLIENT": args.client,
        "MLS_UPSTREAM_REPORT": str(out / f"{target}.json"),
    }
    log = open(out / f"{target}.log", "wb")  # noqa: SIM115 (closed with the process)
    print(f"{target}: running MLflow's tests (log: {out / f'{target}.log'})", flush=True)
    process = subprocess.Popen(
        command, cwd=REPO, env=target_env, stdout=log, stderr=subprocess.STDOUT
    )
    return process, time.monotonic()


def wait(target: str, process: subprocess.Popen, began: float) -> None:
    code = process.wait()
    print(f"{target}: pytest exited {code} after {time.monotonic() - began:.0f} s", flush=True)


# --- the comparison ----------------------------------------------------------------------


def load(out: Path, target: str) -> dict:
    path = out / f"{target}.json"
    if not path.exists():
        sys.exit(f"no report {path}: see {out / (target + '.log')}")
    return json.loads(path.read_text())


def counts(results: dict) -> str:
    tally = Counter(entry["outcome"] for entry in results.values())
    order = ("passed", "failed", "skipped", "xfailed", "xpassed", "unknown")
    return ", ".join(f"{tally[name]} {name}" for name in order if tally[name])


def first_refusal(entry: dict) -> dict | None:
    refusals = entry.get("refusals") or []
    for refusal in refusals:
        if refusal.get("decision") != "allow":
            return refusal
    return refusals[0] if refusals else None


def describe(refusal: dict | None) -> str:
    if not refusal:
        return ""
    reasons = "; ".join(refusal.get("reasons") or [])
    text = f"{refusal.get('status')} {refusal.get('decision')} {refusal.get('method')} "
    text += f"{refusal.get('path')}"
    return text + (f" ({reasons})" if reasons else "")


def report(out: Path) -> int:
    stock, secure = load(out, "stock"), load(out, "secure")
    s_results, x_results = stock["results"], secure["results"]
    names = sorted(set(s_results) | set(x_results))
    only_secure = [
        n
        for n in names
        if x_results.get(n, {}).get("outcome") in FAILED
        and s_results.get(n, {}).get("outcome") not in FAILED
    ]
    only_stock = [
        n
        for n in names
        if s_results.get(n, {}).get("outcome") in FAILED
        and x_results.get(n, {}).get("outcome") not in FAILED
    ]
    both = [
        n
        for n in names
        if s_results.get(n, {}).get("outcome") in FAILED
        and x_results.get(n, {}).get("outcome") in FAILED
    ]
    short = {n: n.removeprefix(TESTS + "/") for n in names}
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    lines = [
        f"MLflow's REST tests ({TESTS}): {len(names)} tests",
        f"  plugin: {meta.get('plugin', '?')}",
        f"  stock : {counts(s_results)}",
        f"  secure: {counts(x_results)} (client: {secure.get('client')})",
        f"  failing on both: {len(both)}; only on stock: {len(only_stock)}; "
        f"only on secure: {len(only_secure)}",
        "",
        f"Failing on secure but not on stock ({len(only_secure)}):",
    ]
    groups: dict[str, int] = defaultdict(int)
    for name in only_secure:
        entry = x_results[name]
        refusal = first_refusal(entry)
        lines.append(f"- {short[name]}")
        lines.append(f"    error  : {entry.get('error') or '(none recorded)'}")
        if refusal:
            lines.append(f"    request: {describe(refusal)}")
            groups[f"{refusal.get('status')} {refusal.get('endpoint')}"] += 1
        else:
            groups["no refused request"] += 1
    lines += ["", "Secure-only failures by first refused request (status, endpoint):"]
    lines += [f"  {count:4d}  {key}" for key, count in sorted(groups.items(), key=lambda i: -i[1])]
    if only_stock:
        lines += ["", f"Failing on stock but not on secure ({len(only_stock)}):"]
        lines += [f"- {short[n]}: {s_results[n].get('error')}" for n in only_stock]
    text = "\n".join(lines)
    (out / "comparison.txt").write_text(text + "\n")
    (out / "comparison.json").write_text(
        json.dumps(
            {
                "only_secure": {
                    n: {**x_results[n], "stock_outcome": s_results.get(n, {}).get("outcome")}
                    for n in only_secure
                },
                "only_stock": only_stock,
                "both": both,
            },
            indent=1,
        )
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

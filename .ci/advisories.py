#!/usr/bin/env python3
"""RustSec advisories for shoal's dependencies, offline.

CI reaches the package registries and nothing else, so it cannot fetch the
RustSec advisory database (a git repository on GitHub) that
`cargo deny check advisories` reads. This script keeps a snapshot of the
part of that database that concerns us in `.ci/advisory-db/`: the
advisories of every crate named in `Cargo.lock` and `fuzz/Cargo.lock`, the
database commit they come from, and the list of crate names the snapshot
was taken for.

    .ci/advisories.py check              # CI: the advisories check, offline
    .ci/advisories.py update [DB_CLONE]  # where there is network: refresh

`check` fails when a lock file names a crate the snapshot was not taken
for (its advisories could be missing: run `update`), then builds a git
repository from the snapshot where cargo-deny looks for its database and
runs `cargo deny --offline check advisories` on the workspace and on fuzz/.
`update` copies the advisories from a clone of
https://github.com/rustsec/advisory-db (cloned into a temporary directory
when none is given). The advisories are CC0-1.0 (RustSec's LICENSE.txt).
"""

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / ".ci" / "advisory-db"
LOCKS = [ROOT / "Cargo.lock", ROOT / "fuzz" / "Cargo.lock"]
DB_URL = "https://github.com/rustsec/advisory-db"
# The directory cargo-deny 0.20 opens for DB_URL under `db-path`.
DB_DIR = "advisory-db-3157b0e258782691"


def lock_crates():
    names = set()
    for lock in LOCKS:
        names |= set(re.findall(r'\[\[package\]\]\nname = "([^"]+)"', lock.read_text()))
    return names


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def update(clone):
    tmp = None
    if clone is None:
        tmp = tempfile.mkdtemp(prefix="advisory-db-")
        clone = Path(tmp) / "db"
        subprocess.run(["git", "clone", "--depth", "1", DB_URL, str(clone)], check=True)
    clone = Path(clone)
    commit = subprocess.run(["git", "log", "-1", "--format=%H %cI"], cwd=clone, check=True,
                            capture_output=True, text=True).stdout.strip()
    names = lock_crates()
    if SNAPSHOT.exists():
        shutil.rmtree(SNAPSHOT)
    (SNAPSHOT / "crates").mkdir(parents=True)
    copied = 0
    for name in sorted(names):
        src = clone / "crates" / name
        if src.is_dir():
            shutil.copytree(src, SNAPSHOT / "crates" / name)
            copied += len(list(src.glob("*.md")))
    shutil.copy(clone / "LICENSE.txt", SNAPSHOT / "LICENSE.txt")
    (SNAPSHOT / "COMMIT").write_text(commit + "\n")
    (SNAPSHOT / "CRATES").write_text("\n".join(sorted(names)) + "\n")
    print(f"advisory snapshot: {copied} advisories of {len(names)} crates, RustSec {commit}")
    if tmp:
        shutil.rmtree(tmp)


def check():
    taken_for = set((SNAPSHOT / "CRATES").read_text().split())
    missing = sorted(lock_crates() - taken_for)
    if missing:
        sys.exit("the advisory snapshot (.ci/advisory-db) was not taken for "
                 f"{', '.join(missing)}: run `.ci/advisories.py update` where there is network")
    commit = (SNAPSHOT / "COMMIT").read_text().strip()
    with tempfile.TemporaryDirectory(prefix="shoal-advisories-") as tmp:
        db = Path(tmp) / "dbs" / DB_DIR
        shutil.copytree(SNAPSHOT, db)
        git("init", "-q", cwd=db)
        git("add", "-A", cwd=db)
        git("-c", "user.name=shoal", "-c", "user.email=ci@localhost", "commit", "-q",
            "-m", f"RustSec {commit}", cwd=db)
        text = (ROOT / "deny.toml").read_text()
        config = Path(tmp) / "deny.toml"
        config.write_text(text.replace("[advisories]\n",
                                       f'[advisories]\ndb-path = "{Path(tmp) / "dbs"}"\n', 1))
        print(f"advisories as of RustSec {commit}", flush=True)
        for manifest in [ROOT / "Cargo.toml", ROOT / "fuzz" / "Cargo.toml"]:
            subprocess.run(["cargo", "deny", "--offline", "--manifest-path", str(manifest),
                            "--config", str(config), "check", "advisories"], check=True)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "check":
        check()
    elif len(sys.argv) >= 2 and sys.argv[1] == "update":
        update(sys.argv[2] if len(sys.argv) > 2 else None)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

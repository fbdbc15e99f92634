"""Run directories: atomic Parquet/JSON/text writes, the manifest, and validated reads (no torch)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qreport.errors import OutputError, RunDirError
from qreport.schema import EXTRA_TABLES, SCHEMA_VERSION, arrow_schema

MANIFEST = "manifest.json"
PARTIAL_PREFIX = ".qreport-partial-"


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (else set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary sibling and rename it over ``path``; the file gets the permissions a plain
    ``open`` would give it under the user's umask (mkstemp alone makes it 0600)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write in {path.parent} ({exc.strerror or exc}); check the folder exists and is writable") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path} ({exc.strerror or exc}); free disk space or choose another --out") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Atomic UTF-8 text write."""
    write_bytes_atomic(path, text.encode("utf-8"))


def json_text(obj) -> str:
    """Stable JSON: sorted keys, two-space indent, NaN/inf as strings."""
    return json.dumps(_finite(obj), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _finite(obj):
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def table_bytes(stage: str, df: pd.DataFrame) -> bytes:
    """Encode ``df`` as Parquet with the stage's declared schema (columns in declared order)."""
    schema = arrow_schema(stage)
    if df.empty:  # a stage that found nothing still writes its declared columns
        df = pd.DataFrame({name: pd.Series([], dtype=object) for name in schema.names})
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


class RunWriter:
    """Builds a run in a hidden sibling folder and moves it into place only when complete.

    A run that is interrupted leaves the previous run (if any) untouched and a folder whose name
    starts with ``.qreport-partial-``, which ``render`` refuses.
    """

    def __init__(self, out: str | Path, force: bool = False):
        self.out = Path(out)
        check_out_dir(self.out, force)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX + self.out.name + "-", dir=self.out.parent))
            # mkdtemp makes it 0700; the finished run is a folder like any other, readable as the umask allows
            os.chmod(self.tmp, 0o777 & ~current_umask())
        except OSError as exc:
            raise OutputError(
                f"cannot create a folder in {self.out.parent} ({exc.strerror or exc}); choose another --out"
            ) from None

    def write_table(self, stage: str, df: pd.DataFrame) -> None:
        """Write ``<stage>.parquet``."""
        write_bytes_atomic(self.tmp / f"{stage}.parquet", table_bytes(stage, df))

    def write_json(self, name: str, obj) -> None:
        """Write a JSON file into the run."""
        write_text_atomic(self.tmp / name, json_text(obj))

    def write_text(self, name: str, text: str) -> None:
        """Write a text file into the run."""
        write_text_atomic(self.tmp / name, text)

    def commit(self) -> Path:
        """Move the finished run into place, replacing a previous run (``--force``) only now."""
        old = None
        if self.out.exists():
            old = self.out.with_name(f"{PARTIAL_PREFIX}{self.out.name}-old-{os.getpid()}")
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def abort(self) -> None:
        """Remove the partial run."""
        shutil.rmtree(self.tmp, ignore_errors=True)


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse an existing output folder unless ``--force`` and it holds a previous qreport run."""
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; choose another --out")
    if not force:
        raise OutputError(f"{out} already exists; pass --force to replace it or choose another --out")
    if any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise OutputError(f"{out} is not a qreport run folder; --force only replaces a previous run, choose another --out")


def runs_inside(folder: str | Path) -> list[Path]:
    """The finished runs directly inside ``folder`` when it is not a run itself (else, or if none, ``[]``)."""
    folder = Path(folder)
    if not folder.is_dir() or (folder / MANIFEST).exists():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(PARTIAL_PREFIX)
                  and (p / MANIFEST).is_file())


class RunReader:
    """A complete run directory, validated before anything is rendered from it."""

    def __init__(self, path: str | Path, in_progress: bool = False):
        self.path = Path(path)
        if not self.path.is_dir():
            raise RunDirError(f"run folder {path} does not exist; pass the --out folder of a qreport build")
        if self.path.name.startswith(PARTIAL_PREFIX) and not in_progress:
            raise RunDirError(f"{path} is an incomplete run (the build was interrupted); run qreport build again")
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise RunDirError(f"{path} has no {MANIFEST}; it is not a finished qreport run, build it again")
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise RunDirError(f"{manifest_path} is corrupt (not JSON); build the run again") from None
        if not isinstance(self.manifest, dict):
            raise RunDirError(f"{manifest_path} is corrupt (not a JSON object); build the run again")
        version = self.manifest.get("schema_version")
        if not isinstance(version, int):
            raise RunDirError(f"{manifest_path} has no schema_version; build the run again")
        if version > SCHEMA_VERSION:
            raise RunDirError(
                f"{path} uses schema version {version}, newer than this qreport's {SCHEMA_VERSION}; upgrade qreport"
            )
        if not self.manifest.get("complete"):
            raise RunDirError(f"{path} is an incomplete run; run qreport build again")

    def stage_status(self, stage: str) -> dict:
        """The manifest's record for ``stage`` (status, seconds, error)."""
        return self.manifest.get("stages", {}).get(stage, {"status": "missing"})

    def table(self, stage: str) -> pd.DataFrame | None:
        """The stage's table (or a table it wrote besides its own), or None if the stage did not produce one (the
        manifest says why, and runs written before that table existed lack it)."""
        if self.stage_status(EXTRA_TABLES.get(stage, stage)).get("status") != "ok":
            return None
        path = self.path / f"{stage}.parquet"
        if stage in EXTRA_TABLES and not path.is_file():
            return None
        if not path.is_file():
            raise RunDirError(f"{path} is missing although the manifest lists it; build the run again")
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise RunDirError(f"{path} is corrupt ({exc.__class__.__name__}); build the run again") from None
        expected = arrow_schema(stage)
        missing = [n for n in expected.names if n not in table.schema.names]
        if missing:
            raise RunDirError(f"{path} lacks column {missing[0]!r}; it was written by another qreport, build again")
        return table.select(expected.names).to_pandas()

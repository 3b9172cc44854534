"""Find and read ingest sources: files, folders, globs and URIs, as tables of cells.

* Sources are files (CSV with any one-character delimiter, gzip allowed; Parquet),
  directories (their table files, sorted, not recursive: the default lake itself lives
  under ``data/``) and globs; local paths, or URIs that ``pyarrow.fs`` reaches
  (``file://``, ``s3://``, ``gs://``, ``hdfs://``; credentials from the environment).
* A source's bytes are read once and hashed as they are read (sha256): the hash that
  identifies the source and the parse see the same bytes.
* A CSV file is first read in the contract's types (ids text, ``ds`` timestamps, numbers),
  on all cores: for a clean file this is all there is to do. If any cell does not convert,
  or is empty or NA, or a record is malformed, the file is read again with every cell as
  text (Parquet keeps its own types), so nothing is coerced before ``schema.parse``; and
  ``read_as_text`` does the same for a typed read whose rows fail a later check, so that
  every quarantined row keeps the file's own text. A CSV record the reader cannot split
  into the header's columns, or that is not UTF-8, is set aside with its row number, to
  be quarantined like any other bad row.
* A file that cannot be read as a table with the contract's columns (or whose columns
  have types that cannot hold the contract's values) raises IngestError naming it.
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import hashlib
import json
import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lstm_pipeline.config import DataConfig
from lstm_pipeline.errors import PipelineError
from lstm_pipeline.lake import schema

__all__ = ["IngestError", "LoadedSource", "RawTable", "load_source", "resolve_sources"]

_log = logging.getLogger(__name__)
_TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".pq")
_GZIP_MAGIC = b"\x1f\x8b"
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_MALFORMED = "wrong number of fields"
_READ_CHUNK = 1 << 23
_NOT_UTF8 = "not valid UTF-8"


class IngestError(PipelineError):
    """A run that cannot proceed; the message names the file and the reason."""


@dataclass(frozen=True)
class RawTable:
    """A file as read: ``table`` (CSV: text cells; Parquet: its types), the row number of
    each table row, and the rows the reader itself rejected (``schema.BAD_COLUMNS`` less
    batch_id and source)."""

    table: pa.Table
    rows: np.ndarray[Any, np.dtype[np.int64]] | None  # None: 1..n
    rejected: pd.DataFrame
    typed: bool = False  # a CSV read in the contract's types, not as text

    @property
    def rows_read(self) -> int:
        return self.table.num_rows + len(self.rejected)


@dataclass(frozen=True)
class LoadedSource:
    """A source as loaded: ``read`` and ``parsed`` are None for a duplicate."""

    name: str  # absolute path or URI: lineage outlives the working directory
    content_hash: str
    source: Path | str  # as resolved, to read it again
    read: RawTable | None = None  # None: a duplicate, not parsed
    parsed: schema.Parsed | None = None
    fingerprint: tuple[int, int] | None = None  # (size, mtime in ns) when it was looked at
    unchanged: bool = False  # a duplicate known by its fingerprint: not even read

    @property
    def batch_id(self) -> str:
        return self.content_hash[:16]


def resolve_sources(sources: Sequence[str | Path]) -> list[Path | str]:
    """Files named by ``sources``, in order, each once: local paths, or URIs (str).

    A missing file or directory raises IngestError; a directory or glob with no table
    files resolves to nothing (a landing folder with no new data is normal).
    """
    found: list[Path | str] = []
    for source in sources:
        text = os.fspath(source)
        matches: list[Path | str]
        if "://" in text:
            matches = list(_resolve_uri(text))
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        elif Path(text).is_dir():
            matches = sorted(p for p in Path(text).iterdir() if p.is_file() and _is_table_file(p.name))
        elif Path(text).exists():
            matches = [Path(text)]
        else:
            raise IngestError(f"{text}: no such file or directory")
        if not matches:
            _log.warning("%s: no table files found", text)
        found.extend(matches)
    unique: dict[Path | str, Path | str] = {}
    for item in found:
        if isinstance(item, Path):
            unique.setdefault(item.resolve(), item.absolute())
        else:
            unique.setdefault(item, item)
    return list(unique.values())


def fingerprint(source: Path | str) -> tuple[int, int] | None:
    """``(size, mtime in ns)`` of a file, from its metadata only; None if not known."""
    try:
        if isinstance(source, Path):
            stat = source.stat()
            return int(stat.st_size), int(stat.st_mtime_ns)
        fs, path = pafs.FileSystem.from_uri(source)
        info = fs.get_file_info(path)
        return (int(info.size), int(info.mtime_ns)) if info.size is not None and info.mtime_ns is not None else None
    except (OSError, pa.ArrowException, ValueError):
        return None


def load_source(source: Path | str, cfg: DataConfig, known: set[str]) -> LoadedSource:
    """Hash and parse one file; a duplicate (its hash in ``known``) is not parsed.

    Raises IngestError if it is not a table in the contract's shape.
    """
    data, content_hash = _fetch(source)
    if content_hash in known:
        _log.info("%s: duplicate of an ingested source (%s), skipped", source, content_hash[:16])
        return LoadedSource(str(source), content_hash, source)
    return _load(source, data, content_hash, cfg, typed=True)


def read_as_text(item: LoadedSource, cfg: DataConfig) -> LoadedSource:
    """``item`` read again with every CSV cell as text (a typed read is only kept for
    files whose every row lands). IngestError if the file changed in the meantime."""
    data, content_hash = _fetch(item.source)
    if content_hash != item.content_hash:
        raise IngestError(f"{item.name}: the file changed while it was being ingested; run the ingest again")
    return _load(item.source, data, content_hash, cfg, typed=False)


def _load(source: Path | str, data: pa.Buffer, content_hash: str, cfg: DataConfig, typed: bool) -> LoadedSource:
    name = str(source)
    is_parquet = data.size >= 4 and data[:4].to_pybytes() == b"PAR1" or name.lower().endswith((".parquet", ".pq"))
    read = _read_parquet(name, data, cfg) if is_parquet else _read_csv(name, data, cfg, typed)
    try:
        parsed = schema.parse(read.table, cfg, read.rows)
    except schema.SchemaError as exc:
        raise IngestError(f"{name}: {exc}") from exc
    _log.info("%s: read %d rows (%s)", name, read.table.num_rows, content_hash[:16])
    return LoadedSource(name, content_hash, source, read, parsed)


def _is_table_file(name: str) -> bool:
    # Skip hidden and marker files (.crc, _SUCCESS) that writers leave beside data files.
    return not name.startswith((".", "_")) and name.lower().endswith(_TABLE_SUFFIXES)


def _resolve_uri(uri: str) -> list[str]:
    scheme = uri.split("://", 1)[0]
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        if glob.has_magic(path):
            parts = path.split("/")
            fixed = "/".join(p for p in parts[: next(i for i, p in enumerate(parts) if glob.has_magic(p))])
            infos = fs.get_file_info(pafs.FileSelector(fixed or "/", recursive=True, allow_not_found=True))
            return sorted(f"{scheme}://{i.path}" for i in infos if i.is_file and fnmatch.fnmatchcase(i.path, path))
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise IngestError(f"{uri}: no such file or directory")
        if info.type == pafs.FileType.Directory:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
            return sorted(f"{scheme}://{i.path}" for i in infos if i.is_file and _is_table_file(i.base_name))
    except (pa.ArrowException, OSError) as exc:
        raise IngestError(f"{uri}: cannot list: {exc}") from exc
    return [uri]


def _fetch(source: Path | str) -> tuple[pa.Buffer, str]:
    """All the bytes of a source, read once, and their sha256: the hash and the parse see
    the same bytes. Local files are hashed chunk by chunk as they are read (cache-warm)."""
    digest = hashlib.sha256()
    try:
        if isinstance(source, Path):
            with open(source, "rb", buffering=0) as local:
                size = os.fstat(local.fileno()).st_size
                data = np.empty(size, dtype=np.uint8)  # not zero-filled: every byte is read into
                view, filled = memoryview(data), 0
                while filled < size:
                    got = local.readinto(view[filled:filled + _READ_CHUNK])
                    if not got:
                        break  # the file shrank while we read: hash what was read
                    digest.update(view[filled:filled + got])
                    filled += got
                return pa.py_buffer(data)[:filled], digest.hexdigest()
        fs, path = pafs.FileSystem.from_uri(source)
        with fs.open_input_file(path) as remote:
            buffer = remote.read_buffer()
        digest.update(buffer)
        return buffer, digest.hexdigest()
    except (pa.ArrowException, OSError) as exc:
        raise IngestError(f"{source}: cannot read: {exc}") from exc


def _read_parquet(name: str, data: pa.Buffer, cfg: DataConfig) -> RawTable:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise IngestError(f"{name}: cannot be read as a Parquet table: {str(exc).strip()}") from exc
    _check_header(name, table.column_names, cfg, None)
    return RawTable(table, None, _rejected([]))


def _read_csv(name: str, data: pa.Buffer, cfg: DataConfig, typed: bool) -> RawTable:
    """``typed``: first try the contract's types (see ``_read_csv_typed``). Otherwise every
    cell as text; records that do not split into the header's columns, or that are not
    UTF-8, are set aside with their row number (records, blank lines not counted)."""
    delimiter = cfg.csv_delimiter
    if len(delimiter) != 1:
        raise IngestError(f"data.csv_delimiter must be one character, got {delimiter!r}")
    if data.size >= 2 and data[:2].to_pybytes() == _GZIP_MAGIC:
        try:
            data = pa.py_buffer(gzip.decompress(data))
        except (OSError, EOFError, zlib.error) as exc:
            raise IngestError(f"{name}: cannot be read as a gzip file: {exc}") from exc
    head = data[: 1 << 16].to_pybytes()
    if not head.lstrip(b"\xef\xbb\xbf").strip():
        raise IngestError(f"{name}: empty file, no header")
    if b"\x00" in head:
        raise IngestError(f"{name}: cannot be read as a CSV table: it holds NUL bytes (binary, or not UTF-8 text)")
    read_options = pacsv.ReadOptions(use_threads=False, block_size=1 << 22)
    try:
        probe = pacsv.open_csv(pa.BufferReader(data), read_options=read_options, parse_options=pacsv.ParseOptions(
            delimiter=delimiter, newlines_in_values=True, invalid_row_handler=lambda row: "skip"))
        names = probe.schema.names
        _check_header(name, names, cfg, delimiter)
        fast = _read_csv_typed(data, names, cfg) if typed else None
        if fast is not None:
            return fast
        malformed: list[tuple[int, int, int, str]] = []

        def set_aside(row: Any) -> str:
            malformed.append((row.number, row.actual_columns, row.expected_columns, row.text))
            return "skip"

        def read(kind: pa.DataType) -> pa.Table:
            malformed.clear()
            return pacsv.read_csv(
                pa.BufferReader(data),
                read_options=read_options,
                parse_options=pacsv.ParseOptions(
                    delimiter=delimiter, newlines_in_values=True, invalid_row_handler=set_aside),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: kind for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False),
            )

        try:
            table, undecodable = read(pa.string()), False  # converting to text checks UTF-8
        except pa.ArrowInvalid as exc:
            if "UTF8" not in str(exc):
                raise
            table, undecodable = read(pa.binary()), True  # find the rows that are not UTF-8
    except pa.ArrowInvalid as exc:
        raise IngestError(f"{name}: cannot be read as a CSV table: {str(exc).strip()}") from exc
    if any(number is None for number, *_ in malformed):
        raise IngestError(f"{name}: cannot be read as a CSV table: malformed records without a position")
    rows = None
    if malformed:
        # The reader numbers records from the header (1); data rows count from 1 after it.
        skipped = np.array([number - 1 for number, *_ in malformed], dtype=np.int64)
        every = np.arange(1, table.num_rows + len(malformed) + 1, dtype=np.int64)
        rows = np.setdiff1d(every, skipped, assume_unique=True)
    rejected = [
        (number - 1, f"{_MALFORMED}: {actual}, the header has {expected}", json.dumps({"_text": text}, ensure_ascii=False))
        for number, actual, expected, text in malformed
    ]
    if undecodable:
        table, rows, not_utf8 = _decode(table, rows)
        rejected += not_utf8
    return RawTable(table, rows, _rejected(rejected))


def _read_csv_typed(data: pa.Buffer, names: list[str], cfg: DataConfig) -> RawTable | None:
    """The contract's columns in their types (other columns as text: they must still be
    UTF-8), read on all cores; None unless every cell converts and none is empty or NA
    (then the text read decides, cell by cell).

    Arrow's CSV conversions are the casts ``schema.parse`` tries first on text, so a
    file read here parses to the same values as when read as text.
    """
    contract = schema.contract_columns(names, cfg)
    types = {n: pa.string() for n in names} | {contract["ds"]: pa.timestamp("us")}
    types |= {contract[c]: pa.float64() for c in ("y", *cfg.covariates)}
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(use_threads=True, block_size=1 << 22),
            parse_options=pacsv.ParseOptions(delimiter=cfg.csv_delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=types, strings_can_be_null=False,
                quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # a malformed record, or a cell that does not convert
    if any(column.null_count for column in table.columns):
        return None  # an empty or NA cell: the text read says which
    return RawTable(table, None, _rejected([]), typed=True)


def _decode(
    table: pa.Table, rows: np.ndarray[Any, np.dtype[np.int64]] | None
) -> tuple[pa.Table, np.ndarray[Any, np.dtype[np.int64]], list[tuple[int, str, str]]]:
    """Binary cells -> text; rows with a cell that is not UTF-8 are set aside."""
    if rows is None:
        rows = np.arange(1, table.num_rows + 1, dtype=np.int64)
    bad = np.zeros(table.num_rows, dtype=bool)
    culprits: dict[int, list[str]] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        start = 0
        for chunk in column.chunks:
            try:
                chunk.cast(pa.string())  # validates UTF-8; almost always passes
            except pa.ArrowInvalid:
                for offset, cell in enumerate(chunk.to_pylist()):
                    if cell is not None and not _is_utf8(cell):
                        bad[start + offset] = True
                        culprits.setdefault(start + offset, []).append(name)
            start += len(chunk)
    undecodable = []
    if bad.any():
        positions = np.flatnonzero(bad)
        taken = table.take(pa.array(positions))
        cells = {n: taken.column(i).to_pylist() for i, n in enumerate(taken.column_names)}
        for j, position in enumerate(positions.tolist()):
            raw = {n: None if v[j] is None else v[j].decode("utf-8", "backslashreplace") for n, v in cells.items()}
            where = ", ".join(culprits[position])
            undecodable.append((int(rows[position]), f"{_NOT_UTF8}: {where}", json.dumps(raw, ensure_ascii=False)))
        table, rows = table.filter(pa.array(~bad)), rows[~bad]
    text = table.cast(pa.schema([pa.field(f.name, pa.string()) for f in table.schema]))
    return text, rows, undecodable


def _is_utf8(cell: bytes) -> bool:
    try:
        cell.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _rejected(rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    return pd.DataFrame({
        "row": pd.Series([r[0] for r in rows], dtype="int64"),
        "reason": pd.Series([r[1] for r in rows], dtype="str"),
        "raw": pd.Series([r[2] for r in rows], dtype="str"),
    })


def _check_header(name: str, columns: Sequence[str], cfg: DataConfig, delimiter: str | None) -> None:
    try:
        schema.contract_columns(columns, cfg)
    except schema.SchemaError as exc:
        hint = ""
        for other, word in _DELIMITER_NAMES.items():
            if delimiter is not None and other != delimiter and any(other in c for c in columns):
                hint = f" (the header looks {word}-separated: is data.csv_delimiter {other!r}?)"
                break
        raise IngestError(f"{name}: {exc}{hint}") from exc
    extra = schema.extra_columns(list(columns), cfg)
    if extra:
        _log.info("%s: column(s) %s are not in the contract and are not stored", name, list(extra))

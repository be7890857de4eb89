"""The documents layout: how a document set is stored between phases, its writer and its reader.

A document set is a folder of `*.jsonl.gz` files (datatrove's jsonl documents), one per task (or per
task and part); phase `P`'s set is `OUT/P/documents/`. Files are written under temporary names and
renamed when complete, so a killed or failed task never leaves a file that looks finished, and gzip
headers carry no time, so the same documents give the same bytes.
"""

from __future__ import annotations

import glob
import gzip
import json
import os

import fsspec.compression as compression
from datatrove.io import OutputFileManager
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from curate.atomic import partial_name, with_path

DOCUMENTS_SUBDIR = "documents"
DOCUMENTS_GLOB = "*.jsonl.gz"

_GZIP_FIXED = "gzip_mtime0"


def _register_fixed_gzip() -> None:
    """A gzip codec for fsspec that writes mtime 0, so the same documents give the same bytes."""
    if _GZIP_FIXED not in compression.compr:
        compression.register_compression(
            _GZIP_FIXED, lambda f, mode="rb", **kw: gzip.GzipFile(fileobj=f, mode=mode, mtime=0), extensions=[]
        )


def _raise_named(e: OSError, path: str):
    named = with_path(e, path)
    if named is e:
        raise e
    raise named from e


class _PartialFileManager(OutputFileManager):
    """Opens every output file under its `.partial` name; `publish` renames them, `discard` deletes them."""

    def get_file(self, filename):
        if filename not in self._output_files:
            self._output_files[filename] = self.fs.open(partial_name(filename), mode=self.mode,
                                                        compression=self.compression)
        return self._output_files[filename]

    def publish(self) -> None:
        names = list(self._output_files)
        try:
            super().close()
        except Exception:
            self.discard(names)
            raise
        for name in names:
            if self.fs.isdir(name):  # `mv` would move the file *into* it and report success
                self.discard(names)
                raise IsADirectoryError(f"cannot write documents to {self.fs.path.rstrip('/')}/{name}: a folder is in the way")
            self.fs.mv(partial_name(name), name)

    def discard(self, names=None) -> None:
        names = list(self._output_files) if names is None else names
        for f in self._output_files.values():
            try:
                f.close()
            except Exception:  # noqa: BLE001 - already failing; the partial file is deleted below
                pass
        self._output_files.clear()
        for name in names:
            if self.fs.exists(partial_name(name)):
                self.fs.rm(partial_name(name))

    def close(self) -> None:  # datatrove's own close paths (e.g. __exit__) publish
        self.publish()


class DocumentsWriter(JsonlWriter):
    """The writer of every document set between phases, byte-identical across reruns.

    datatrove's gzip output embeds the time of writing in each file's header; this one does not.
    Files are written as `<name>.partial` and renamed when the task has written its last document; a
    task that fails deletes them, a killed one leaves only `.partial` names, which no reader lists.
    """

    name = "🐿 Jsonl (documents)"

    def __init__(self, output_folder: str):
        super().__init__(output_folder, output_filename="${rank}.jsonl.gz", compression="gzip")
        _register_fixed_gzip()
        self.output_mg = _PartialFileManager(self.output_folder, mode="wb", compression=_GZIP_FIXED)

    def run(self, data, rank: int = 0, world_size: int = 1):
        _register_fixed_gzip()  # pool processes import this module afresh
        done = False
        try:
            for document in data:
                with self.track_time():
                    self.write(document, rank)
                yield document
            done = True
        except OSError as e:  # ENOSPC from a write names no file: say which folder
            _raise_named(e, self.output_folder.path)
        finally:
            if done:
                try:
                    self.output_mg.publish()
                except OSError as e:
                    _raise_named(e, self.output_folder.path)
            else:
                self.output_mg.discard()


def documents_reader(folder: str) -> JsonlReader:
    """Reader of a document set written by a previous phase."""
    return JsonlReader(folder, glob_pattern=DOCUMENTS_GLOB, add_file_path=False)



def read_documents(folder: str) -> list[dict]:
    """All documents of a document set, in shard order. For tests and small data."""
    docs = []
    for path in sorted(glob.glob(os.path.join(folder, DOCUMENTS_GLOB))):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            docs.extend(json.loads(line) for line in f if line.strip())
    return docs

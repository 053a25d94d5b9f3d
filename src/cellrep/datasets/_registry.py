"""Where the public source files live, their checksums, and the local cache they are kept in."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_GEO_SAMPLES = "https://ftp.ncbi.nlm.nih.gov/geo/samples/GSM2230nnn"


@dataclass(frozen=True)
class Source:
    """One downloadable file.

    ``known_hash`` is ``"sha256:..."``/``"md5:..."`` where a checksum has been published, or
    ``None`` where none was available when the registry was written: pooch then downloads without
    verification and logs the file's SHA256, which should be pasted here.
    """

    url: str
    known_hash: str | None

    @property
    def fname(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _baron_sample(accession: str, sample: str) -> Source:
    fname = f"{accession}_{sample}_umifm_counts.csv.gz"
    return Source(f"{_GEO_SAMPLES}/{accession}/suppl/{fname}", None)


#: Baron et al. 2016 (GEO GSE84133): one inDrop UMI-count CSV per donor.
BARON_SAMPLES: dict[str, dict[str, Source]] = {
    "human": {
        "human1": _baron_sample("GSM2230757", "human1"),
        "human2": _baron_sample("GSM2230758", "human2"),
        "human3": _baron_sample("GSM2230759", "human3"),
        "human4": _baron_sample("GSM2230760", "human4"),
    },
    "mouse": {
        "mouse1": _baron_sample("GSM2230761", "mouse1"),
        "mouse2": _baron_sample("GSM2230762", "mouse2"),
    },
}

#: 10x Genomics PBMC3k, Cell Ranger 1.1.0 filtered matrices (hg19); the MD5 is the one published
#: alongside the download in several public pipelines.
PBMC3K = Source(
    "https://cf.10xgenomics.com/samples/cell-exp/1.1.0/pbmc3k/pbmc3k_filtered_gene_bc_matrices.tar.gz",
    "md5:f76d73bf7a582aaf32b798bcae9574d3",
)


def default_data_dir() -> Path:
    """The download cache: ``$CELLREP_DATA_DIR`` if set, else the OS cache folder (``pooch.os_cache('cellrep')``)."""
    env_value = os.environ.get("CELLREP_DATA_DIR")
    if env_value:
        return Path(env_value).expanduser()
    import pooch

    return Path(pooch.os_cache("cellrep"))


def fetch(source: Source, data_dir: str | os.PathLike | None = None) -> Path:
    """Download ``source`` into ``data_dir`` unless a verified copy is already there; return its path."""
    import pooch

    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    return Path(pooch.retrieve(source.url, known_hash=source.known_hash, fname=source.fname, path=folder))

"""Where the public source files live, their checksums, and the local cache they are kept in."""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_GEO_SAMPLES = "https://ftp.ncbi.nlm.nih.gov/geo/samples/GSM2230nnn"
_PYPI_FILES = "https://files.pythonhosted.org/packages"


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


#: The wheel of CAME 0.1.13 (MIT), as listed on https://pypi.org/simple/came/ with its SHA256.
#: ``came/sample_data.zip`` inside it holds ``raw-Baron_human.h5ad`` (a 25 % subsample of the
#: human cells), ``raw-Baron_mouse.h5ad`` (all mouse cells) and ``gene_matches_1v1_*.csv``.
CAME_WHEEL = Source(
    f"{_PYPI_FILES}/10/61/178f646c249b408fd0931cf626e3868409ff081513c7d9695de961db28d4/"
    "came-0.1.13-py3-none-any.whl",
    "sha256:7fdb1a65006ca668e0cab51576a09bf540f074346e5f120ec654cd4f91627f7d",
)

#: The wheel of DESC 2.1.1 (MIT), as listed on https://pypi.org/simple/desc/ with its SHA256;
#: ``desc/datasets/pbmc.h5ad`` inside it holds the 10x PBMC3k counts (2700 cells, 32738 genes).
DESC_WHEEL = Source(
    f"{_PYPI_FILES}/6d/53/fe18dbc09a48cc01c3a9e339075bd5ea969faf61a3bc75619638f6da7c40/"
    "desc-2.1.1-py3-none-any.whl",
    "sha256:402094571549d0557273bfe2d9411c2cd041f1e3221d335da2d6c0d7de1fa91d",
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


def extract_member(archive: str | os.PathLike, members: Sequence[str], folder: str | os.PathLike) -> Path:
    """Extract ``members[0]`` from the zip ``archive`` into ``folder``, then ``members[1]`` from that, and so on.

    A copy already in ``folder`` that is newer than the archive it came from is reused. Each file is
    written under a temporary name and renamed when complete, so an interrupted run leaves no
    truncated file behind. Returns the path of the last member.
    """
    archive, folder = Path(archive), Path(folder)
    for member in members:
        target = folder / member
        if not target.exists() or target.stat().st_mtime < archive.stat().st_mtime:
            _extract_atomically(archive, member, target)
        archive = target
    return archive


def _extract_atomically(archive: Path, member: str, target: Path) -> None:
    if not zipfile.is_zipfile(archive):
        raise ValueError(
            f"{archive} is not a zip archive; pass the unmodified wheel named in the loader's docs."
        )
    with zipfile.ZipFile(archive) as zipped:
        if member not in zipped.namelist():
            raise ValueError(
                f"{archive} does not contain {member!r}; pass the unmodified wheel named in the loader's docs."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            with zipped.open(member) as source, open(partial, "wb") as destination:
                shutil.copyfileobj(source, destination)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


#: The wheel of infercnvpy 0.6.1 (BSD-3-Clause), as listed on https://pypi.org/simple/infercnvpy/ with
#: its SHA256; ``infercnvpy/datasets/data/oligodendroglioma.h5ad`` holds 184 Smart-seq2 cells of
#: Tirosh et al. 2016 (4 patients).
INFERCNVPY_WHEEL = Source(
    f"{_PYPI_FILES}/c7/98/a7e59473efa091ef812a20470e38350ae6c113bc90a8b80e8c127830bcdb/"
    "infercnvpy-0.6.1-py3-none-any.whl",
    "sha256:42f12f92897f21ff1e09524cf57741807dd60aba4efb8356f4df89db698115d6",
)

_SCDCC_COMMIT = "142e4e0370f4134751e92a160f95f97fce8db369"
_SCDCC_FILES = f"https://github.com/ttgump/scDCC/raw/{_SCDCC_COMMIT}/data"

#: Labelled count matrices (``X`` cells × genes, ``Y`` the authors' cell-type codes, no gene names)
#: from the GitHub repository ttgump/scDCC (Apache-2.0; Tian et al. 2021, Nat Commun 12:1873),
#: pinned to a commit and by the SHA256 of each file as fetched here.
SCDCC_FILES: dict[str, Source] = {
    "human_kidney": Source(
        f"{_SCDCC_FILES}/Small_Datasets/human_kidney_counts_top2000.h5",
        "sha256:01c8d454047bb2feca6df19db52b8818e7623e2755134c809221f0a5654e25cc",
    ),
    "mouse_bladder": Source(
        f"{_SCDCC_FILES}/Small_Datasets/mouse_bladder_cell_select_2100.h5",
        "sha256:4e686932884fc04d8bc9a92dad1a648d6e23f490b0c106903bca95d68093f591",
    ),
    "worm_neuron": Source(
        f"{_SCDCC_FILES}/Small_Datasets/worm_neuron_cell.h5",
        "sha256:4f2a3c4b8492bcd11d957a8a74098ba258c271d714718c175854a7c44b1e31e6",
    ),
    "cbmc": Source(
        f"{_SCDCC_FILES}/CITE_PBMC/CITE_CBMC_counts_top2000.h5",
        "sha256:68f36cd64729b1ee853fe5f760dbc0a9238d52a18a8a076742883379cce98e9f",
    ),
}

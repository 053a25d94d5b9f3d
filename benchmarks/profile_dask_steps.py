"""Per-chunk cost of every step of bench_dask.py's two pipelines, in one process, reading vs computing.

Usage::

    python benchmarks/profile_dask_steps.py STORE [--chunk-size 10000] [--chunks 3] [--repeats 5] [--codecs]

``STORE`` is a zarr store written by ``bench_dask.py``. On the first ``--chunks`` chunks of
cells, each step runs on the synchronous scheduler (one thread, no distributed overhead) and
the best of ``--repeats`` runs is kept, so that another job on the machine inflates the figures
as little as possible. Steps, per chunk:

- read: the chunk read from the store (decompressed into a CSR matrix);
- the gene-selection pass: read, normalize + log, gene statistics (cellrep ``log_normalize`` +
  ``select_genes(hvg, seurat)``; scanpy ``normalize_total`` + ``log1p`` + ``highly_variable_genes``);
- the persist pass: read, normalize + log, the selected genes.

Prints seconds per chunk and, after the read is subtracted, the computing time of each side.
``--codecs`` first rewrites the first two chunks with other zarr codecs and times reading a chunk.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def best_of(repeats: int, func) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def compare_codecs(store: str, chunk_size: int, repeats: int) -> None:
    """Size on disk and read time of one chunk of cells with anndata's default codec and others."""
    import shutil
    import tempfile
    from pathlib import Path

    import zarr
    from anndata.experimental import write_elem
    from numcodecs import Blosc, Zstd

    import cellrep as cr

    source = cr.read_lazy(store, chunk_size=chunk_size)
    counts = source.X[: 2 * chunk_size].compute()
    codecs = {
        "default (blosc lz4, shuffle)": {},
        "uncompressed": {"compressor": None},
        "zstd level 1": {"compressor": Zstd(1)},
        "blosc lz4, no shuffle": {"compressor": Blosc("lz4", 1, Blosc.NOSHUFFLE)},
    }
    with tempfile.TemporaryDirectory() as folder:
        for name, options in codecs.items():
            path = Path(folder) / "codec.zarr"
            shutil.rmtree(path, ignore_errors=True)
            group = zarr.open_group(str(path), mode="w", zarr_format=2)
            write_elem(group, "X", counts, dataset_kwargs=options)
            write_elem(group, "obs", source.obs.iloc[: 2 * chunk_size])
            write_elem(group, "var", source.var)
            size = sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
            lazy = cr.read_lazy(path, chunk_size=chunk_size)
            seconds = best_of(repeats, lambda lazy=lazy: lazy.X.blocks[1].compute(scheduler="synchronous"))
            print(f"  {name:<30} {size / 1e6:6.0f} MB on disk, read one chunk {seconds:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store")
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-top", type=int, default=2000)
    parser.add_argument("--codecs", action="store_true", help="also time reading with other zarr codecs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.codecs:
        print(f"codecs, the first {2 * args.chunk_size} cells rewritten:")
        compare_codecs(args.store, args.chunk_size, args.repeats)

    import scanpy as sc

    import cellrep as cr
    import dask

    cells = args.chunk_size * args.chunks

    def lazy():
        return cr.read_lazy(args.store, chunk_size=args.chunk_size)[:cells].copy()

    genes = {}

    def cellrep_selection():
        adata = lazy()
        cr.pp.log_normalize(adata)
        cr.pp.select_genes(adata, method="hvg", flavor="seurat", n_top=args.n_top)
        genes["cellrep"] = adata.var["selected"].to_numpy()
        return adata

    def scanpy_selection():
        adata = lazy()
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
        sc.pp.highly_variable_genes(adata, n_top_genes=args.n_top, flavor="seurat")
        genes["scanpy"] = adata.var["highly_variable"].to_numpy()
        return adata

    def cellrep_persist():
        adata = lazy()
        cr.pp.log_normalize(adata)
        return adata[:, genes["cellrep"]].X.compute()

    def scanpy_persist():
        adata = lazy()
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
        return adata[:, genes["scanpy"]].X.compute()

    with dask.config.set(scheduler="synchronous"):
        cellrep_selection(), scanpy_selection()  # imports and numba caches
        read = best_of(args.repeats, lambda: lazy().X.compute()) / args.chunks
        rows = {
            name: best_of(args.repeats, func) / args.chunks
            for name, func in (
                ("cellrep selection pass", cellrep_selection),
                ("scanpy selection pass", scanpy_selection),
                ("cellrep persist pass", cellrep_persist),
                ("scanpy persist pass", scanpy_persist),
            )
        }
    print(f"per chunk of {args.chunk_size} cells (best of {args.repeats}, {args.chunks} chunks, one thread)")
    print(f"  read (decompress into CSR)          {read:6.3f} s")
    for name, seconds in rows.items():
        print(f"  {name:<35} {seconds:6.3f} s   compute without the read {seconds - read:6.3f} s")
    for step in ("selection", "persist"):
        cellrep_s, scanpy_s = rows[f"cellrep {step} pass"], rows[f"scanpy {step} pass"]
        print(
            f"  {step} pass, scanpy / cellrep: with the read {scanpy_s / cellrep_s:.2f}, "
            f"compute only {(scanpy_s - read) / max(cellrep_s - read, 1e-9):.2f}"
        )
    same = np.mean(genes["cellrep"] == genes["scanpy"])
    print(f"  genes selected by both: {same:.4f} of the gene mask agrees")


if __name__ == "__main__":
    main()

"""cellrep.datasets."""

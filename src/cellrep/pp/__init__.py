"""cellrep.pp."""

"""cellrep.pl."""

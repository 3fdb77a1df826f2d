"""The run directory and exports: learners on disk, the run record and log, saved ensembles."""

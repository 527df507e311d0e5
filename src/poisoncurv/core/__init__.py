"""Infrastructure every layer uses: repository paths, run profiles and devices, provenance, atomic
results files, and the fitting helpers (log-log slopes, relative errors) shared by drivers and tests."""

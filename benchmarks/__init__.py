"""Performance benchmarks: each measures stock MLflow (or raw crypto) in the same run."""

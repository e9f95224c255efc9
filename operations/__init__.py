"""Operations: Prometheus metrics, the readiness state and the per-process sampler (see README "Operating it")."""

"""Retention: which tags and manifests a repository's policy lets go (plan.py, pure), the
policy file (policy.py) and carrying a plan out over any NodeAPI (run.py)."""

"""The request path, one module per step.

front_door (ASGI/WSGI I/O) → actions + matcher + census (route) → canonical (read once, rebuild
what MLflow receives) → resolution + lookups (every named id → resource) → pipeline (decide,
enforce) → listings (narrow results) and authorship (stamp the author).
"""

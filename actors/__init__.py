"""Ray actor classes: thin wrappers that hold state (models, clients, caches) and call into ``nat_ray``.

The logic they run lives in ``nat_ray`` and is tested as plain Python; ``ray.remote`` is applied at wiring time.
"""

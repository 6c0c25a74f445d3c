"""Suite-wide settings.

Hypothesis: no per-example deadline and no "too slow" health check. Tests never assert speed
(bench/ measures it), and on a loaded 2-core CI machine a slow draw is not a bug.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("fluvial", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fluvial")

"""The headless project engine shared by the web app and any API: features, training, predictions, views.

Build one `ProjectEngine` per process from a `storage.Repository` and a `core.cache.FeatureStore`; it is
thread-safe and keeps no per-user state, so every browser session (and any other client) shares it.
"""

from engine.engine import EXPORT_FORMATS, ProjectEngine, need_key
from engine.results import EvalResult, FeatureProgress, TrainOutcome, TrainStatus
from engine.settings import EngineSettings

__all__ = [
    "EXPORT_FORMATS",
    "EngineSettings",
    "EvalResult",
    "FeatureProgress",
    "ProjectEngine",
    "TrainOutcome",
    "TrainStatus",
    "need_key",
]

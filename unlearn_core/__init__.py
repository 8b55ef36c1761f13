"""Unlearning Lens core: data, models, training, unlearning methods, metrics, run store.

No Streamlit import anywhere in this package; the app is a thin layer over it.
"""

__version__ = "0.1.0"

__all__ = ["Lens", "LensRun"]


def __getattr__(name: str):
    # Lazy: `import unlearn_core.config` (and the CLI's start) need not import torch and
    # plotly for the notebook API.
    if name in __all__:
        from . import lens
        return getattr(lens, name)
    raise AttributeError(f"module 'unlearn_core' has no attribute {name!r}")

"""Unlearning Lens core: data, models, training, unlearning methods, metrics, run store.

No Streamlit import anywhere in this package; the app is a thin layer over it.
"""

__version__ = "0.1.0"

"""Streamlit glue shared by the pages: singletons, session state, job panel, forms."""

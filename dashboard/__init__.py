"""The Streamlit dashboard: loads a workspace, calls ``analysis``, draws with plotly."""

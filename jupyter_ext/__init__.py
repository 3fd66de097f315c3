"""Jupyter server extension and JupyterLab sidebar; they land with the JupyterLab extension."""

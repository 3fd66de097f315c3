"""Live ipywidgets and plotly views of the cluster; they land with the notebook surface."""

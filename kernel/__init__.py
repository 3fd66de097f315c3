"""IPython magics (``%load_ext servelab``); the notebook surface lands here."""

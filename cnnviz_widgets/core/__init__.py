"""The compute core: torch + numpy (+ PIL for image files). Never imports ipywidgets or plotly."""

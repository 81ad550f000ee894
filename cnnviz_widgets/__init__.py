"""cnnviz_widgets: see inside convolutional networks, live, in Jupyter.

    import cnnviz_widgets as cw
    model = cw.load_model("shapes")          # embedded model, no download
    cw.FilterGrid(model)                     # first-layer filters as a grid

Every public name lives here, flat. Names are resolved lazily on first use so that
``import cnnviz_widgets`` stays cheap: torch, ipywidgets, plotly, scikit-learn and umap are
imported only by the functions and widgets that need them.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (relative to this package)
_EXPORTS = {
    # models, images, layers, hooks (core)
    "VisionModel": "core.models",
    "load_model": "core.models",
    "as_model": "core.models",
    "available_models": "core.models",
    "WeightsUnavailableError": "core.models",
    "default_device": "core.device",
    "load_image": "core.images",
    "sample_images": "core.images",
    "list_layers": "core.layers",
    "get_layer": "core.layers",
    "capture": "core.hooks",
    "make_shapes": "core.shapes",
    "SHAPE_CLASSES": "core.shapes",
    "first_layer_filters": "core.filters",
    "filter_grid_image": "core.filters",
    # which pixels matter
    "saliency": "core.attribution",
    "guided_backprop": "core.attribution",
    "grad_cam": "core.attribution",
    "guided_grad_cam": "core.attribution",
    "occlusion": "core.occlusion",
    "occlusion_steps": "core.occlusion",
    "sanity_check": "core.sanity",
    "neuron": "core.targets",
    # the last layer
    "extract_features": "core.features",
    "nearest_neighbors": "core.neighbors",
    "embed": "core.embedding",
    "embed_steps": "core.embedding",
    "image_dataset": "core.datasets",
    # gradient ascent, one optimizer
    "class_score": "core.objectives",
    "channel": "core.objectives",
    "neuron_objective": "core.objectives",
    "deepdream": "core.objectives",
    "l2": "core.objectives",
    "total_variation": "core.objectives",
    "Ascent": "core.optimize",
    "AscentDiverged": "core.optimize",
    "jitter": "core.optimize",
    "blur_every": "core.optimize",
    "clip_small_norm": "core.optimize",
    "clip_small_contribution": "core.optimize",
    "regularizers": "core.generate",
    "class_visualization": "core.generate",
    "neuron_visualization": "core.generate",
    "fooling_image": "core.generate",
    "deep_dream": "core.generate",
    # style
    "gram_matrix": "core.style",
    "style_transfer": "core.style",
    "texture_synthesis": "core.style",
    "feature_inversion": "core.style",
    # widgets
    "FilterGrid": "widgets.filter_grid",
    "SaliencyExplorer": "widgets.saliency",
    "OcclusionExplorer": "widgets.occlusion",
    "SanityCheck": "widgets.sanity",
    "NeighborsExplorer": "widgets.neighbors",
    "EmbeddingScatter": "widgets.scatter",
    "GradientAscentViewer": "widgets.ascent",
    "FoolingExplorer": "widgets.fooling",
    "DeepDreamViewer": "widgets.dream",
    "GramMatrixView": "widgets.gram",
    "StyleTransferViewer": "widgets.style",
    "Dashboard": "widgets.dashboard",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'cnnviz_widgets' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))

"""Widgets over the core: thin views (traits in, a core call, image bytes out)."""

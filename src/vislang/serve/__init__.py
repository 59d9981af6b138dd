"""``vislang serve``: the HTTP API and the web page over one index.

    from vislang.serve import create_app
    app = create_app("photos.index", caption_model="shapes-blip-caption")

Layers: ``app`` (routes: parse, check, answer) -> ``services`` (the capabilities, blocking)
run through ``work`` (bounded thread pools); ``files`` confines every image read to the
index's roots; ``guard`` checks the Host, the token and the body size; ``limits`` holds the
numbers. Needs the ``serve`` extra (``pip install 'vislang[serve]'``).
"""

from vislang.serve.app import create_app
from vislang.serve.limits import Limits

__all__ = ["Limits", "create_app"]

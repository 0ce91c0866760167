"""The shop's front door: an ASGI service between a storefront and Triton (``fashionrec shop serve``).

It keeps each customer's recent events (:mod:`.store`), takes the site's events into an append-only log
that the next training run reads (:mod:`.event_log`), composes pages from Triton's touchpoints
(:mod:`.pages`, over :mod:`.triton`) and renders a storefront (:mod:`.storefront`). Layer: above the
model repository and the pipeline stages (it checks events with ingest's rules), below the app.
"""

"""``distillguard serve``: the deploy bundle behind HTTP, releasing only the audited output form.

``app`` builds the FastAPI application (:func:`~distillguard.serve.app.create_app`, testable
in-process), ``requests`` validates request bodies against the bundle's schema, ``budget``
keeps the per-client query budget, ``metrics`` counts requests and latencies, and
``server`` runs it under uvicorn. FastAPI and uvicorn come with the ``serve`` extra.
"""

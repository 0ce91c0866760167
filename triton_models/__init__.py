"""Triton model templates, installed with fashionrec as package data: one folder per model, with its
``config.pbtxt`` template (rendered by :func:`fashionrec.repository.publish.render_configs`) and, for the python
models, the ``model.py`` each published version runs. No Python code of its own is imported from here."""

"""KFP v2 component definitions: thin wrappers that call the typed functions in ``fashionrec``.

Each component runs in the fashionrec component image (``fashionrec.config.COMPONENT_IMAGE``), where
the package and its pinned dependencies are installed, so ``packages_to_install`` stays empty.
"""

"""Publish the serving tests' catalogue as version 1 of a new model repository with whatever fashionrec is
importable, for a fixture of a layout an older release published (``README.md`` in this folder).

    python publish_repository.py CHECKOUT OUT    # CHECKOUT: the older release's tree, also on PYTHONPATH
"""

import importlib.util
import sys
from pathlib import Path

from fashionrec.repository.publish import publish_model_repository


def main(checkout: Path, out: Path) -> None:
    spec = importlib.util.spec_from_file_location("release_conftest", checkout / "tests" / "serving" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = conftest  # its dataclasses look their module up
    spec.loader.exec_module(conftest)
    catalogue = conftest._make_catalogue()
    export = conftest.write_export(out / "export", catalogue.product_ids, catalogue.embeddings, catalogue.is_new)
    print(publish_model_repository(*export, str(out / "repo"), conftest.TEST_SERVING))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

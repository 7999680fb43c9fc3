"""Docker images that reproduce a golden, in three layers:

* pure logic: what goes into the image (spec.py), the Dockerfile text (render.py), and the
  package data they read (data.py, compat.py);
* side effects: the third-party wheels, resolved, downloaded and cached (wheelhouse.py);
  envlock's own wheel, built from its source tree (wheel.py); Docker itself (docker_engine.py,
  the only module importing ``docker``). Child processes (pip) go through ``envlock.runner``;
* the use case: the order of the steps (build.py).

Pure modules never import side-effect ones.
"""

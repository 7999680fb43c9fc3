"""Docker images that reproduce a golden: pure rendering (render.py, spec.py), package data
(data.py, compat.py), the wheelhouse (wheelhouse.py), Docker itself (docker_engine.py -- the
only module importing ``docker``) and the orchestration (build.py)."""

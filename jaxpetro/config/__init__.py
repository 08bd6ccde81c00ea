"""YAML -> frozen, validated config objects (see :mod:`jaxpetro.config.loader`).

The machinery (:func:`option`, :func:`section`, :func:`load_config`, ...) lives in
``loader.py``; each workflow's schema lives in its own module (``qmap.py``, ``demo.py``,
``ptpath.py``, ``isocon.py``, ``batch.py``; the command table in ``registry.py``) and is re-exported here, so ``from jaxpetro.config import
QmapConfig`` works. Schema modules import no JAX: the CLI validates a config before the
heavier workflow is imported.
"""

from jaxpetro.config.common import OutputConfig
from jaxpetro.config.demo import DemoConfig, SyntheticConfig
from jaxpetro.config.batch import BatchConfig
from jaxpetro.config.loader import (
    FrozenDict,
    NestedConfig,
    config_to_dict,
    config_to_yaml,
    describe_config,
    load_config,
    option,
    read_sweep,
    section,
)
from jaxpetro.config.isocon import IsoconConfig
from jaxpetro.config.ptpath import PtpathConfig
from jaxpetro.config.qmap import ClusteringConfig, QmapConfig, QmapInputConfig

__all__ = [
    "BatchConfig",
    "ClusteringConfig",
    "DemoConfig",
    "FrozenDict",
    "NestedConfig",
    "IsoconConfig",
    "OutputConfig",
    "PtpathConfig",
    "QmapConfig",
    "QmapInputConfig",
    "SyntheticConfig",
    "config_to_dict",
    "config_to_yaml",
    "describe_config",
    "load_config",
    "option",
    "read_sweep",
    "section",
]

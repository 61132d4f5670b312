"""The run configuration: its schema, ranges, allowed names and recipes. Imports only `core`
(and pydantic, which checks the types).

`from unetkit import config` is the configuration's API: the sections (`schema`), `from_dict`
and `json_schema` (`build`), the rules a configuration must satisfy (`rules`), and where
configurations come from: recipes, YAML files and `--set` overrides (`sources`).
"""

from unetkit.config.build import from_dict, json_schema
from unetkit.config.rules import (
           RANGES,
           allowed_values,
           check_ranges,
           validate,
           validate_for_inference,
)
from unetkit.config.schema import (
           Config,
           ConfigError,
           DataConfig,
           LossConfig,
           ModelConfig,
           SplitConfig,
           TrainConfig,
           migrate,
)
from unetkit.config.sources import (
           RECIPE_DIR,
           apply_overrides,
           for_training,
           load,
           parse_value,
           read_yaml,
           recipe_names,
           recipe_path,
           safe_yaml,
           to_yaml,
)

__all__ = ["Config", "ConfigError", "DataConfig", "LossConfig", "ModelConfig", "SplitConfig",
           "TrainConfig", "from_dict", "json_schema", "migrate", "RANGES", "allowed_values",
           "check_ranges", "validate", "validate_for_inference", "RECIPE_DIR", "apply_overrides",
           "for_training", "load", "parse_value", "read_yaml", "recipe_names", "recipe_path",
           "safe_yaml", "to_yaml"]

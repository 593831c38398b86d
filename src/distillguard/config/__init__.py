"""The spec: a TOML file, parsed into frozen pydantic models.

Unknown keys are errors, every problem is reported at once with its field path, and
relative paths are resolved against the spec file's folder, so a spec means the same
thing whatever the working directory. The resolved spec (absolute paths, every default
filled in) is what a run records in ``spec.toml``.

One module per part of the spec: ``run``, ``data``, ``models`` (teacher and student),
``distill``, ``softlabels`` (with ``[transfer]``), ``privacy``, ``audit``, ``gate``,
``deploy`` (the release policy and the server's limits), ``lm`` (the causal-LM track's
settings and defaults), ``scan`` (``distillguard scan``), ``spec`` (the whole spec as a union of its two tracks) and ``loading`` (TOML in, errors out). Import from here; attack
names live in :mod:`distillguard.attack_names`.
"""

from distillguard.config.audit import EXECUTION_KEYS, AuditConfig
from distillguard.config.data import (
    BUILTINS,
    LM_FILES,
    ROLES,
    TEXT_BUILTINS,
    DataConfig,
    NewsPiiConfig,
    PiiCorpusConfig,
    SplitSizes,
    SynthConfig,
)
from distillguard.config.deploy import DeployConfig
from distillguard.config.distill import DistillConfig
from distillguard.config.gate import GateConfig
from distillguard.config.lm import LM_DEFAULTS, LMArchConfig, LMProbeConfig, TokenizerConfig, starts_from_public
from distillguard.config.loading import demo_spec, load_spec, parse_spec
from distillguard.config.models import ModelConfig, StudentConfig, TeacherConfig
from distillguard.config.privacy import DP_SGD_FIELDS, PATE_DEFAULTS, PATE_FIELDS, PrivacyConfig
from distillguard.config.run import RunConfig
from distillguard.config.scan import SCAN_TARGET, ScanConfig
from distillguard.config.softlabels import SoftLabelConfig, SyntheticTransferConfig, TransferConfig
from distillguard.config.spec import ClassifierSpec, LMSpec, Spec

__all__ = [
    "DeployConfig",
    "BUILTINS",
    "DP_SGD_FIELDS",
    "EXECUTION_KEYS",
    "LM_DEFAULTS",
    "starts_from_public",
    "LM_FILES",
    "PATE_DEFAULTS",
    "PATE_FIELDS",
    "ROLES",
    "TEXT_BUILTINS",
    "AuditConfig",
    "ClassifierSpec",
    "DataConfig",
    "DistillConfig",
    "GateConfig",
    "LMArchConfig",
    "LMProbeConfig",
    "LMSpec",
    "ModelConfig",
    "NewsPiiConfig",
    "PiiCorpusConfig",
    "PrivacyConfig",
    "RunConfig",
    "SCAN_TARGET",
    "ScanConfig",
    "SoftLabelConfig",
    "SplitSizes",
    "StudentConfig",
    "SynthConfig",
    "TeacherConfig",
    "TokenizerConfig",
    "SyntheticTransferConfig",
    "TransferConfig",
    "demo_spec",
    "load_spec",
    "parse_spec",
]

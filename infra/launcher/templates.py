"""Config templates under infra/ (nginx, Prometheus), rendered with `@@{name}` placeholders because
both formats use `$` themselves."""

from __future__ import annotations

import string
from pathlib import Path

#: infra/, where the deployment configs live (infra/nginx/, infra/prometheus/).
INFRA_DIR = Path(__file__).resolve().parent.parent


class ConfigTemplate(string.Template):
    delimiter = "@@"


def render(relative_path: str, **values: object) -> str:
    """The template at `infra/<relative_path>` with every placeholder filled (KeyError if not)."""
    return ConfigTemplate((INFRA_DIR / relative_path).read_text()).substitute(values)

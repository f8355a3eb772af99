"""The protocol's golden vectors (tests/data/envelope.json, the project's reference bytes), by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS_FILE = Path(__file__).resolve().parent / "data" / "envelope.json"


def load_vectors() -> dict[str, dict[str, Any]]:
    document = json.loads(VECTORS_FILE.read_text())
    return {vector["name"]: vector for vector in document["vectors"]}

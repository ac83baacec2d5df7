"""The sample shop database and the tiny model trained to answer its sample questions.

Shared by ``make demo`` and the test suite. The model is trained on the exact
prompts ``sqlcoder.prompt()`` renders for the sample database, so a question
asked through the real extension, socket and daemon comes back as exactly the
SQL it was taught.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .pgcluster import Cluster
from .tiny import train_tiny_sqlcoder

__all__ = ["REPO", "SAMPLE_SQL", "sample_questions", "load_sample", "training_pairs", "ensure_demo_model"]

REPO = Path(__file__).resolve().parents[2]
SAMPLE_SQL = REPO / "demo" / "sample.sql"
QUESTIONS = REPO / "demo" / "questions.json"


def sample_questions() -> list[dict[str, str]]:
    """``[{"question": ..., "sql": ...}, ...]`` from demo/questions.json."""
    return json.loads(QUESTIONS.read_text())


def load_sample(cluster: Cluster, dbname: str) -> None:
    """Load demo/sample.sql into ``dbname``."""
    cluster.psql(dbname=dbname, file=SAMPLE_SQL)


def completion_for(sql: str) -> str:
    """What SQLCoder writes after ``[SQL]\\n``: the query, then the closing tag."""
    return f"{sql}\n[/SQL]"


def training_pairs(cluster: Cluster, dbname: str) -> list[tuple[str, str]]:
    """(prompt, completion) for each sample question, prompts rendered by the extension itself."""
    pairs = []
    with cluster.connect(dbname) as conn:
        for item in sample_questions():
            prompt = conn.execute("SELECT sqlcoder.prompt(%s)", (item["question"],)).fetchone()[0]
            pairs.append((prompt, completion_for(item["sql"])))
    return pairs


def ensure_demo_model(cluster: Cluster, dbname: str, **train_kwargs: Any) -> Path:
    """The tiny demo model for the sample database in ``dbname`` (trained once, then cached)."""
    return train_tiny_sqlcoder(training_pairs(cluster, dbname), **train_kwargs)

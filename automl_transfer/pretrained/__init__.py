"""Controllers shipped with the package: what `--mode=transfer` starts from by default.

Each shipped controller is a folder `automl_transfer/pretrained/<name>/` holding a saved
controller (controller_io's layout, without optimizer slots: a transfer starts a fresh optimizer)
and `card.json`: the tasks and trials it saw, its settings, the search-space fingerprint, module
profile, the command that rebuilds it and its date (package.py writes both). A controller only
fits the search space it was trained for, so the default is the shipped one whose card names the
space being searched.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from automl_transfer.errors import UserError

ROOT = Path(__file__).resolve().parent
CARD_FILE = "card.json"


def shipped(root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """name -> card of every shipped controller under `root`."""
    cards = {}
    for card in sorted(root.glob(f"*/{CARD_FILE}")):
        cards[card.parent.name] = json.loads(card.read_text(encoding="utf-8"))
    return cards


def default_controller(space_fingerprint: str, root: Path = ROOT) -> Path:
    """The shipped controller for the search space with this fingerprint.

    Raises:
        UserError: none is shipped for that space (the message lists what is).
    """
    cards = shipped(root)
    for name, card in cards.items():
        if card.get("space_fingerprint") == space_fingerprint:
            return root / name
    offered = "; ".join(f"{name} (space {card.get('space_fingerprint')}, modules "
                        f"{','.join(card.get('modules', []))})" for name, card in cards.items())
    raise UserError(f"no shipped controller fits this search space (fingerprint "
                    f"{space_fingerprint}; shipped: {offered or 'none'}): pass --controller_dir, "
                    f"e.g. the controller/ folder of a multitask run")

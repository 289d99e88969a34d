"""The `autoregressive_config` key tables (config docstring, README, model card) come from one place."""

import re
from pathlib import Path

from helpers import tiny_config

from llava_next_ar import AUTOREGRESSIVE_CONFIG_DEFAULTS, LlavaNextARConfig
from llava_next_ar.model_card_llava_next_ar import AUTOREGRESSIVE_CONFIG_DOCS, autoregressive_config_table, model_card

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_key_is_documented_once_in_order():
    assert list(AUTOREGRESSIVE_CONFIG_DOCS) == list(AUTOREGRESSIVE_CONFIG_DEFAULTS)
    assert all(meaning.strip() for meaning in AUTOREGRESSIVE_CONFIG_DOCS.values())


def test_readme_table_is_the_generated_one():
    expected = autoregressive_config_table(AUTOREGRESSIVE_CONFIG_DEFAULTS, header="default")
    pattern = r"<!-- generated: autoregressive_config_table[^\n]*-->\n(.*?)\n<!-- end generated -->"
    found = re.search(pattern, README.read_text(), re.S)
    assert found, "README.md lost the generated autoregressive_config table's markers"
    assert found.group(1) == expected, f"README.md: the autoregressive_config table is stale, use:\n{expected}"


def test_config_docstring_and_model_card_show_the_same_meanings():
    table = autoregressive_config_table(AUTOREGRESSIVE_CONFIG_DEFAULTS, header="default")
    assert table.replace("\n", "\n        ") in LlavaNextARConfig.__doc__
    config = tiny_config(num_hist=2)
    card = model_card(config)
    assert autoregressive_config_table(config.autoregressive_config, as_json=True) in card
    assert "| `num_hist` | `2` | " + AUTOREGRESSIVE_CONFIG_DOCS["num_hist"] + " |" in card

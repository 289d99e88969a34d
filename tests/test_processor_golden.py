"""The processor gives bit-identical outputs, and the same errors, as before the video processor was split out of it
(`tests/data/processor_golden.json`, written by `tests/processor_golden.py` from the processor of commit d5ddbed)."""

import json

import pytest

from processor_golden import GOLDEN, cases, run_case


REFERENCE = json.loads(GOLDEN.read_text())


def test_the_reference_covers_every_case():
    assert sorted(REFERENCE) == sorted(cases())


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_processor_output_is_bit_identical_to_the_reference(name):
    assert json.loads(json.dumps(run_case(cases()[name]), sort_keys=True)) == REFERENCE[name]

"""`make mutants` stays runnable: each mutant's edit still finds the code it breaks."""

import pytest

from conftest import REPO
from mutants import MUTANTS


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda mutant: mutant.guarantee)
def test_each_mutant_edits_code_that_is_there_once(mutant):
    assert (REPO / mutant.path).read_text().count(mutant.old) == 1
    assert mutant.new != mutant.old

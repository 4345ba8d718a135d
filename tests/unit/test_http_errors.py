"""The API's "not there" answer: an absent record is a 404, a slip in our code is not dressed as one."""
import pytest

from service.http.errors import Problem, not_found_as_404


def test_an_absent_record_is_a_404_saying_what_is_missing():
    with pytest.raises(Problem) as answer, not_found_as_404("no alert 7"):
        raise LookupError("no alert 7")
    assert (answer.value.status, answer.value.detail) == (404, "no alert 7")


@pytest.mark.parametrize("slip", [KeyError("station_id"), IndexError("list index out of range")])
def test_a_key_or_index_slip_in_the_block_stays_an_error(slip):
    with pytest.raises(type(slip)), not_found_as_404("no alert 7"):
        raise slip

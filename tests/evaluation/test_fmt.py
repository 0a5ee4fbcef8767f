from nat_ray.evaluation.fmt import pct


def test_a_share_is_a_percentage_with_one_decimal_and_nothing_measured_is_a_dash() -> None:
    assert pct(0.4567) == "45.7" and pct(1.0) == "100.0" and pct(0.0) == "0.0"
    assert pct(None) == "-"

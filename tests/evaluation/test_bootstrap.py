import numpy as np
import pytest

from fashionrec.evaluation.bootstrap import mean_intervals, paired_difference, paired_ratio_of_means, ratio_of_means


def test_identical_systems_give_a_zero_width_interval_at_zero():
    values = np.random.default_rng(1).random(200)
    interval = paired_difference(values, values)
    assert (interval.mean, interval.low, interval.high) == (0.0, 0.0, 0.0)


def test_constant_shift_is_recovered_exactly():
    values = np.random.default_rng(2).random(300)
    interval = paired_difference(values + 0.1, values)
    assert interval.mean == pytest.approx(0.1)
    assert interval.low == pytest.approx(0.1) and interval.high == pytest.approx(0.1)


def test_noise_interval_contains_zero_and_a_real_gain_excludes_it():
    rng = np.random.default_rng(3)
    baseline = rng.random(2000)
    noisy = baseline + rng.normal(0, 0.2, 2000)
    better = baseline + 0.05 + rng.normal(0, 0.2, 2000)
    assert paired_difference(noisy, baseline, seed=4).low < 0 < paired_difference(noisy, baseline, seed=4).high
    assert paired_difference(better, baseline, seed=4).low > 0


def test_interval_width_matches_the_normal_approximation():
    rng = np.random.default_rng(5)
    difference = rng.normal(0.0, 1.0, 4000)
    interval = paired_difference(difference, np.zeros(4000), confidence=0.95, resamples=2000, seed=6)
    expected_half_width = 1.96 * difference.std() / np.sqrt(4000)
    assert (interval.high - interval.low) / 2 == pytest.approx(expected_half_width, rel=0.1)


def test_many_means_in_one_draw_give_each_rows_own_interval():
    rng = np.random.default_rng(7)
    rows = np.stack([rng.random(500), rng.normal(0.2, 1.0, 500), np.full(500, 0.25), (rng.random(500) < 0.1) * 1.0])
    intervals = mean_intervals(rows, confidence=0.9, resamples=500, seed=3)
    for row, interval in zip(rows, intervals, strict=True):
        single = paired_difference(row, np.zeros_like(row), confidence=0.9, resamples=500, seed=3)
        assert (interval.mean, interval.low, interval.high) == pytest.approx((single.mean, single.low, single.high),
                                                                             rel=1e-12)
    assert (intervals[2].low, intervals[2].high) == pytest.approx((0.25, 0.25))  # no spread, no width
    assert mean_intervals(np.zeros((0, 3))) == []
    one = mean_intervals(np.array([[0.5], [2.0]]))  # a slice of one customer
    assert [(i.mean, i.low, i.high) for i in one] == [(0.5, 0.5, 0.5), (2.0, 2.0, 2.0)]
    with pytest.raises(ValueError):
        mean_intervals(np.zeros((2, 0)))


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError):
        paired_difference(np.array([]), np.array([]))


def test_ratio_of_constant_samples_is_exact():
    interval = ratio_of_means(np.full(50, 0.25), np.full(80, 0.5))
    assert (interval.mean, interval.low, interval.high) == (0.5, 0.5, 0.5)


def test_ratio_interval_matches_the_delta_method_and_resamples_each_sample_on_its_own():
    rng = np.random.default_rng(7)
    numerator, denominator = rng.normal(1.0, 1.0, 3000), rng.normal(2.0, 1.0, 1000)  # different sizes
    interval = ratio_of_means(numerator, denominator, resamples=2000, seed=8)
    ratio = numerator.mean() / denominator.mean()
    # delta method: var(a/b) ~ (var(a)/n_a)/b^2 + a^2 (var(b)/n_b)/b^4
    sd = np.sqrt(numerator.var() / 3000 / denominator.mean() ** 2
                 + numerator.mean() ** 2 * denominator.var() / 1000 / denominator.mean() ** 4)
    assert interval.mean == pytest.approx(ratio)
    assert interval.low < ratio < interval.high
    assert (interval.high - interval.low) / 2 == pytest.approx(1.96 * sd, rel=0.1)


def test_ratio_needs_a_non_zero_denominator():
    with pytest.raises(ValueError, match="non-zero"):
        ratio_of_means(np.ones(3), np.zeros(3))


def test_paired_ratio_of_equal_pairs_is_exactly_one_in_every_resample():
    values = np.random.default_rng(9).random(500)  # spread across customers, none within a pair
    interval = paired_ratio_of_means(values, values)
    assert (interval.mean, interval.low, interval.high) == pytest.approx((1.0, 1.0, 1.0))
    independent = ratio_of_means(values, values)
    assert independent.high - independent.low > 0.05  # resampled apart, the same values look uncertain


def test_paired_ratio_interval_matches_the_delta_method_with_the_covariance():
    rng = np.random.default_rng(10)
    n = 3000
    denominator = rng.normal(2.0, 1.0, n)
    numerator = 0.5 * denominator + rng.normal(0.0, 0.3, n)  # strongly correlated per customer
    interval = paired_ratio_of_means(numerator, denominator, resamples=2000, seed=11)
    a, b = numerator.mean(), denominator.mean()
    covariance = np.cov(numerator, denominator, bias=True)[0, 1]
    # delta method: var(a/b) ~ (var(a)/b^2 - 2 a cov(a, b)/b^3 + a^2 var(b)/b^4) / n
    sd = np.sqrt((numerator.var() / b**2 - 2 * a * covariance / b**3 + a**2 * denominator.var() / b**4) / n)
    assert interval.mean == pytest.approx(a / b)
    assert interval.low < a / b < interval.high
    assert (interval.high - interval.low) / 2 == pytest.approx(1.96 * sd, rel=0.1)


def test_paired_ratio_needs_one_pair_per_customer():
    with pytest.raises(ValueError, match="one value per customer"):
        paired_ratio_of_means(np.ones(3), np.ones(4))

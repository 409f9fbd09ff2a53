"""recipes.throughput's arithmetic, on a fake generator whose cost is known: rates, ratios, answer
agreement and the first-token bound (no model, no timing)."""

from dataclasses import dataclass

import pytest

from lvlm_skip.evaluation.generation import Generation
from recipes.throughput import measure_task


@dataclass(frozen=True)
class _Item:
    id: str
    prompt: str


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _CostedGenerator:
    """A batch of ``n`` rows costs ``prefill * n`` seconds (compute-bound) plus ``step`` per decoding step
    after the first token, whatever ``n`` (memory-bound): the shape of bench-llava on a CPU."""

    def __init__(self, clock, prefill=1.0, step=0.1, max_new_tokens=11, batch_dependent=False):
        self.clock, self.prefill, self.step = clock, prefill, step
        self.max_new_tokens, self.batch_dependent = max_new_tokens, batch_dependent
        self.limits_seen = []

    def prompt_length(self, prompt):
        return len(prompt)

    def generate_batch(self, images, prompts, label):
        self.limits_seen.append(self.max_new_tokens)
        self.clock.now += self.prefill * len(prompts) + self.step * (self.max_new_tokens - 1)
        text = "yes" if not (self.batch_dependent and len(prompts) > 1) else "no"
        return [Generation(text=text, new_tokens=self.max_new_tokens, seconds=0.0) for _ in prompts]


def _requests(n=8):
    return [(_Item(f"q{i}", "x" * (i % 3 + 1)), None, "x" * (i % 3 + 1)) for i in range(n)]


def _rows(generator, clock, sizes=(1, 4, 8), labels=("none", "skip1")):
    rows = measure_task(generator, _requests(), list(labels), list(sizes), runs=2, sync=lambda: None, clock=clock)
    return {(r["variant"], r["batch"]): r for r in rows}


def test_rates_ratios_and_the_first_token_bound():
    clock = _Clock()
    generator = _CostedGenerator(clock)
    rows = _rows(generator, clock)
    # batch 1: each item 1 s prefill + 10 steps of 0.1 s = 2 s; batch 8: 8 s + 1 s for 8 items
    assert rows[("none", 1)]["items_per_s"] == pytest.approx(0.5)
    assert rows[("none", 8)]["items_per_s"] == pytest.approx(8 / 9, abs=1e-3)
    assert rows[("none", 8)]["x_batch1"] == pytest.approx(round(16 / 9, 2))
    assert rows[("skip1", 8)]["x_stock"] == pytest.approx(1.0)
    # one new token: the prefill alone, 1 s per item at every batch size, so no batch can beat 2 s / 1 s
    for size in (1, 4, 8):
        assert rows[("none", size)]["first_token_s"] == pytest.approx(1.0)
        assert rows[("none", size)]["x_batch1_bound"] == pytest.approx(2.0)
        assert rows[("none", size)]["x_batch1"] <= rows[("none", size)]["x_batch1_bound"]
        assert rows[("skip1", size)]["first_token_s"] is None  # measured on the stock row only
    assert all(r["same_answers"] == 1.0 for r in rows.values())
    # the warm-up round (8 tokens) and the one-token runs set the limit for their own run only
    assert set(generator.limits_seen) == {11, 8, 1} and generator.max_new_tokens == 11
    assert all(r["max_new_tokens"] == 11 for r in rows.values())


def test_the_warm_up_is_short_untimed_and_not_the_compared_answers():
    clock = _Clock()

    class WarmupDiffers(_CostedGenerator):
        def generate_batch(self, images, prompts, label):
            results = super().generate_batch(images, prompts, label)
            if self.max_new_tokens == 3:  # the warm-up's answers differ: they must not be compared
                return [Generation(text="warm", new_tokens=3, seconds=0.0) for _ in prompts]
            return results

    generator = WarmupDiffers(clock)
    rows = measure_task(generator, _requests(), ["none"], [1, 8], runs=1, sync=lambda: None, clock=clock,
                        warmup_tokens=3)
    # the warm-up: batch 1 (8 batches of 3 tokens, then stock's one-token run), batch 8 (one of each); then timed
    assert generator.limits_seen[:18] == [3] * 8 + [1] * 8 + [3, 1]
    assert set(generator.limits_seen[18:]) == {11, 1}
    assert all(r["same_answers"] == 1.0 for r in rows)
    assert rows[0]["items_per_s"] == pytest.approx(0.5)  # timed at the full 11 tokens, not at the warm-up's 3


def test_answers_that_change_with_the_batch_are_counted():
    clock = _Clock()
    rows = _rows(_CostedGenerator(clock, batch_dependent=True), clock, sizes=(1, 4))
    assert rows[("none", 1)]["same_answers"] == 1.0
    assert rows[("none", 4)]["same_answers"] == 0.0


def test_the_limit_is_restored_when_a_batch_raises():
    clock = _Clock()

    class Failing(_CostedGenerator):
        def generate_batch(self, images, prompts, label):
            if self.max_new_tokens == 1:
                raise RuntimeError("out of memory")
            return super().generate_batch(images, prompts, label)

    generator = Failing(clock)
    with pytest.raises(RuntimeError):
        _rows(generator, clock, sizes=(1,))
    assert generator.max_new_tokens == 11
